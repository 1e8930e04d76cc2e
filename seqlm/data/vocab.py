"""The vocabulary: built from the training split only, saved with every run."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from seqlm.errors import SeqlmError

UNK = "<unk>"
EOS = "<eos>"


class Vocab:
    """A bijection token <-> id. Id 0 is ``<unk>``, id 1 is ``<eos>``; then the words by
    falling frequency, ties in order of first appearance (so the ids are deterministic)."""

    def __init__(self, tokens: list[str]):
        if tokens[:2] != [UNK, EOS]:
            raise ValueError(f"a vocabulary starts with {UNK}, {EOS}; got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary has each token once")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    unk_id = 0
    eos_id = 1

    @classmethod
    def build(
        cls, lines: Iterable[list[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """Count the training split's tokens; keep those seen ``min_freq`` times or more, at
        most ``max_size`` entries in all (the two specials included)."""
        if min_freq < 1:
            raise SeqlmError(f"data.min_freq={min_freq} must be >= 1")
        if max_size is not None and max_size < 3:
            raise SeqlmError(f"data.max_size={max_size} must be >= 3 (two specials and a word)")
        counts: Counter[str] = Counter()
        for line in lines:
            counts.update(line)
        counts.pop(UNK, None)  # a corpus' literal <unk> (PTB has one) is our <unk>
        counts.pop(EOS, None)
        words = [w for w, c in counts.most_common() if c >= min_freq]  # stable for ties
        if max_size is not None:
            words = words[: max_size - 2]
        return cls([UNK, EOS, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(self.digest())

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(t, 0) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def digest(self) -> str:
        """A short content hash: two runs are comparable only if their digests match."""
        return hashlib.sha256("\n".join(self.itos).encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.itos, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """A saved vocabulary: a JSON list of distinct strings, ``<unk>`` and ``<eos>`` first."""
        try:
            tokens = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise ValueError("not a JSON list of strings")
            return cls(tokens)
        except (OSError, ValueError) as e:
            raise SeqlmError(f"{path}: not a seqlm vocabulary ({e})") from None

    def to_array(self, lines: list[list[str]]) -> np.ndarray:
        """All lines as one int32 id stream, each line followed by ``<eos>``."""
        get = self.stoi.get
        out = []
        for line in lines:
            out.extend(get(t, 0) for t in line)
            out.append(1)
        return np.asarray(out, dtype=np.int32)
