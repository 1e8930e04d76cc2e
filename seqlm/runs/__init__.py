"""What a run leaves behind: its directory (``rundir``) and its loggers (``tracking``)."""
