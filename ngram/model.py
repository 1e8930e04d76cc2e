"""``NgramLM``: an n-gram model of any order, fitted from text or read from ARPA.

A fitted model is kept in backoff form, as in an ARPA file: for every stored n-gram its full
(interpolated) log-probability, for every stored context its log backoff weight. The stages
live beside this facade, one file each, as KenLM's ``lm/builder`` has them: ``counting``
(sorted runs, spilled and merged), ``estimate`` (smoothing into backoff form), ``prune``
(count thresholds, entropy), ``query`` (streams and decoder states), ``npz`` and ``arpa``
(files).
"""

from __future__ import annotations

import numpy as np

from ngram import keys as trie
from ngram import npz
from ngram.estimate import Estimation
from ngram.prune import Pruning
from ngram.query import Queries


class NgramLM(Estimation, Pruning, Queries):
    """Ids ``0 .. V-1`` are the vocabulary (``unk_id``, ``eos_id`` among them); id ``V`` is
    ``<s>``. ``tables[k-1]`` holds order k: sorted keys, log-probs, log backoff weights."""

    def __init__(
        self,
        itos: list[str],
        order: int,
        smoothing: str,
        unk_id: int = 0,
        eos_id: int = 1,
        normalized: bool = True,
    ):
        self.itos, self.order, self.smoothing = list(itos), order, smoothing
        self.unk_id, self.eos_id, self.bos_id = unk_id, eos_id, len(itos)
        self.base = len(itos) + 1
        self.normalized = normalized
        self.keys: list[np.ndarray] = []
        self.logp: list[np.ndarray] = []
        self.logbow: list[np.ndarray] = []
        self.info: dict = {}
        self._uniform: list[tuple] | None = None  # (ctx indices, gamma) for additive/MLE
        self.missing_bow = 0.0  # log weight of a context never stored (stupid backoff: log 0.4)
        self._stoi: dict[str, int] | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def stoi(self) -> dict[str, int]:
        if self._stoi is None:
            self._stoi = {w: i for i, w in enumerate(self.itos)}
        return self._stoi

    def words_of(self, k: int) -> np.ndarray:
        """The (n, k) word ids of every stored k-gram, in table order (``<s>`` is id V)."""
        return trie.words_of(self.keys, k, self.base)

    @property
    def has_arpa_form(self) -> bool:
        """Whether ``write_arpa`` can write it: a normalised model that backs off (not
        additive, MLE or stupid backoff)."""
        return self._uniform is None and self.normalized

    def save(self, path) -> None:
        """Every table, exactly (``.npz``, no pickle); ARPA holds only backoff-form models."""
        npz.save(self, path)

    @classmethod
    def load(cls, path, mmap: bool = True) -> NgramLM:
        """A model saved by ``save``. ``mmap``: the tables are mapped from the file rather than
        read, so a model larger than the memory budget can still score (pages are read as
        lookups touch them). Files of the first format (packed keys) are converted."""
        return npz.load(cls, path, mmap)
