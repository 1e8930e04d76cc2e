"""Data: tokenizers, vocabulary, corpora (with downloads), batching, the data module."""

from seqlm.data.datamodule import LMData, prepared_data
from seqlm.data.vocab import Vocab

__all__ = ["LMData", "Vocab", "prepared_data"]
