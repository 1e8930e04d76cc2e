"""The command line before Hydra runs: every check of the overrides (``overrides``) and the
help pages (``help``)."""
