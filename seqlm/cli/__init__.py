"""The command line before Hydra runs: every check of the overrides (``overrides``), the help
pages (``help``), the library notices silenced with their reasons (``quiet``)."""
