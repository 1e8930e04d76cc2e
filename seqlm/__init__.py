"""seqlm: recurrent language models with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"


def load(path, arpa_unk: str | None = None):
    """A language model a decoder can step (``seqlm.decoding.step``): any run directory, checkpoint,
    n-gram ``model.npz`` or ARPA file."""
    from seqlm.scorers import load_scorer

    return load_scorer(path, arpa_unk).stepper()
