"""What training needs beside the LightningModule: the Trainer and its callbacks
(``trainer``), NT-ASGD (``averaging``), the divergence guard (``divergence``), checkpoints
(``checkpointing``), exact resume (``resume``) and how a command reaches every process
(``launch``)."""
