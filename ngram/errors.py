"""The one error type: bad options or files, with a message that names what is wrong."""


class NgramError(ValueError):
    """An order, smoothing name, discount, corpus or ARPA file that cannot be used."""
