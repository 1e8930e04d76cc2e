"""Training: the LightningModule (``module``), the Trainer and its callbacks (``trainer``),
NT-ASGD (``averaging``), the divergence guard (``divergence``), checkpoints
(``checkpointing``), exact resume (``resume``), interruption (``interrupt``), the validation
history (``history``) and how a command reaches every process (``launch``)."""
