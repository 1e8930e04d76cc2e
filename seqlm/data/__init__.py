"""Data: tokenizers, vocabulary, corpora (with downloads), batching, the data module.

``LMData`` (Lightning's data module) is imported when first used: the commands that only
score an n-gram need ``CorpusData`` alone, and not Lightning's or torch's start-up."""

from seqlm.data.vocab import Vocab

__all__ = ["CorpusData", "LMData", "Vocab", "prepared_data"]


def __getattr__(name: str):
    if name == "LMData":
        from seqlm.data.datamodule import LMData

        return LMData
    if name in ("CorpusData", "prepared_data"):
        from seqlm.data import corpusdata

        return getattr(corpusdata, name)
    raise AttributeError(f"module 'seqlm.data' has no attribute {name!r}")
