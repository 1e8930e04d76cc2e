"""Training: the LightningModule (``module``), the Trainer and its callbacks (``trainer``),
NT-ASGD (``averaging``), the divergence guard (``divergence``), checkpoints
(``checkpointing``), exact resume (``resume``), interruption (``interrupt``), the validation
history (``history``), how a command reaches every process (``launch``) and the library
notices that do not apply (``quiet``)."""
