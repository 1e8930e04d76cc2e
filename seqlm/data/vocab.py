"""The vocabulary: built from the training split only, saved with every run."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from seqlm.errors import SeqlmError

UNK = "<unk>"
EOS = "<eos>"
BLOCK = 1 << 22  # ids processed at once by the whole-corpus passes


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
        return cls.build_encoded(lines, min_freq, max_size)[0]

    @classmethod
    def build_encoded(
        cls,
        lines: Iterable[list[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        path: Path | None = None,
    ) -> tuple[Vocab, np.ndarray]:
        """``build`` and ``to_array`` of the same lines in one streaming pass: each token gets
        an id in order of first appearance, the ids are counted with ``bincount``, and a
        permutation renumbers them by falling frequency (ties by first appearance, as
        ``Counter.most_common`` orders them). Memory: the int32 ids and one entry per type;
        with ``path``, one entry per type, the ids going to that file (``to_array``)."""
        if min_freq < 1:
            raise SeqlmError(f"data.min_freq={min_freq} must be >= 1")
        if max_size is not None and max_size < 3:
            raise SeqlmError(f"data.max_size={max_size} must be >= 3 (two specials and a word)")
        first: defaultdict[str, int] = defaultdict()
        first.default_factory = first.__len__  # an unseen token gets the next id
        first[UNK], first[EOS] = 0, 1  # a corpus' literal <unk> (PTB has one) is our <unk>
        raw = _encode(lines, first.__getitem__, path)
        counts = np.zeros(len(first), dtype=np.int64)
        for a in range(0, len(raw), BLOCK):  # bincount copies to int64: a block at a time
            counts += np.bincount(raw[a : a + BLOCK], minlength=len(first))
        counts[:2] = 0
        # words by falling count, ties by first appearance (a stable sort of -count)
        order = np.argsort(-counts[2:], kind="stable") + 2
        order = order[counts[order] >= min_freq]
        if max_size is not None:
            order = order[: max_size - 2]
        renumber = np.zeros(len(first), dtype=np.int32)  # dropped words -> <unk>
        renumber[1] = 1
        renumber[order] = np.arange(2, len(order) + 2, dtype=np.int32)
        for a in range(0, len(raw), BLOCK):  # in place, in blocks: no second corpus-sized array
            raw[a : a + BLOCK] = renumber[raw[a : a + BLOCK]]
        if isinstance(raw, np.memmap):
            raw.flush()
        types = np.asarray(list(first), dtype=object)
        return cls([UNK, EOS, *types[order].tolist()]), raw

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
        from seqlm.files import write_text

        write_text(path, json.dumps(self.itos, ensure_ascii=False, indent=0) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """A saved vocabulary: a JSON list of distinct strings, ``<unk>`` and ``<eos>`` first."""
        try:
            tokens = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise ValueError("not a JSON list of strings")
            return cls(tokens)
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: deep nesting
            why = " ".join(str(e).split())[:200]
            raise SeqlmError(f"{path}: not a seqlm vocabulary ({why})") from None

    def to_array(self, lines: Iterable[list[str]], path: Path | None = None) -> np.ndarray:
        """All lines as one int32 id stream, each line followed by ``<eos>``; with ``path``,
        written there block by block (raw int32) and returned memory-mapped."""
        return _encode(lines, _OrUnk(self.stoi).__getitem__, path)


class _OrUnk(dict):
    """token -> id, and 0 (``<unk>``) for a token not in the vocabulary, at C speed for hits."""

    def __missing__(self, token: str) -> int:
        return 0


def _blocks(lines: Iterable[list[str]], id_of) -> Iterator[np.ndarray]:
    """int32 ids of every token, ``<eos>`` (1) after each line, a block of lines at a time."""
    it = iter(lines)
    while block := list(itertools.islice(it, 20_000)):
        tokens = itertools.chain.from_iterable(itertools.chain(ln, (EOS,)) for ln in block)
        yield np.fromiter(map(id_of, tokens), dtype=np.int32)


def _encode(lines: Iterable[list[str]], id_of, path: Path | None = None) -> np.ndarray:
    """int32 ids of every token, ``<eos>`` (1) after each line, built in blocks of lines so
    that no Python list of the whole corpus exists. With ``path``, the blocks are appended
    to that file as they come and the ids returned memory-mapped (writable, for the
    renumbering of ``build_encoded``): memory holds one block, whatever the corpus's size."""
    if path is not None:
        n = 0
        with open(path, "wb") as f:
            for b in _blocks(lines, id_of):
                b.tofile(f)
                n += len(b)
        return np.memmap(path, np.int32, "r+", shape=(n,)) if n else np.zeros(0, np.int32)
    blocks = list(_blocks(lines, id_of))
    out = np.empty(sum(len(b) for b in blocks), dtype=np.int32)
    at = 0
    blocks.reverse()
    while blocks:  # each block is freed once copied: the ids are held about once, not twice
        b = blocks.pop()
        out[at : at + len(b)] = b
        at += len(b)
    return out
