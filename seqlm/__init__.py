"""seqlm: recurrent language models with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"


def load(path, arpa_unk: str | None = None, device: str | None = None):
    """A language model a decoder can step (``seqlm.decoding.step``): any run directory,
    checkpoint, n-gram ``model.npz`` or ARPA file; a network on ``device`` (default: a GPU when
    there is one). Its log-probabilities come back as float64 CPU tensors."""
    from seqlm.scorers import load_scorer

    return load_scorer(path, arpa_unk, device).stepper()
