"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class SeqlmError(Exception):
    """Bad input from the user (a file, an option, a checkpoint). Its message is one line that
    names what is wrong; the CLI prints it without a traceback unless ``debug=true``."""
