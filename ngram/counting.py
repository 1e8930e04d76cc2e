"""Counting n-grams with vectorised numpy, in bounded memory: every n-gram one int64 key (the
trie layout of ``ngram.keys``), counted chunk by chunk into sorted runs that are spilled to disk
when a memory budget is reached and merged at the end (an external sort, as KenLM's ``lmplz
-S`` does it), one order after the other.

A sentence ``w_1 .. w_n`` is read as ``<s> w_1 .. w_n </s>`` (one ``<s>``, as KenLM does):
the n-grams are all runs of 1..N tokens inside that padded line, so ``<s>`` is context only
and the first word is predicted from the context ``<s>``.

The counts do not depend on the budget: every chunk size and spill pattern gives the same
sorted keys and the same integer counts (``tests/test_ngram_scale.py`` forces spills).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ngram import keys as trie
from ngram.errors import NgramError
from ngram.files import reason

# Working memory per chunk position while counting is ~110 bytes (the chunk, its line
# positions, contexts, one order's keys and the sort's copy, int64 each): chunks get a ninth of
# the budget. The runs held before a spill get a thirtieth, because merging them takes ~3x that
# (a spill of 200 MB at a budget of 2 GB). The rest is for the id stream and the counts merged
# so far.
BYTES_PER_POSITION = 1000
HELD_SHARE = 30
MIN_CHUNK = 1 << 12
MIN_BUDGET = BYTES_PER_POSITION * MIN_CHUNK  # 4 MB: below this no chunk fits
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value, option: str = "max_memory") -> int:
    """``2G``, ``500M``, ``64K``, ``1.5G`` or a number of bytes -> bytes."""
    text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text)
    if isinstance(value, bool) or not m:
        raise NgramError(f"{option}={value!r} is not a size: give bytes or e.g. 500M, 2G")
    size = int(float(m.group(1)) * _UNITS[m.group(2)])
    if size < MIN_BUDGET:
        raise NgramError(
            f"{option}={value!r} is too small: one counting chunk needs "
            f"{MIN_BUDGET / 2**20:.1f}M ({MIN_CHUNK} positions)"
        )
    return size


def default_budget() -> int:
    """2 GB, or a quarter of the machine's memory if that is less: a budget a laptop survives."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    return max(MIN_BUDGET, min(2 << 30, ram // 4))


def pad_sentences(ids: np.ndarray, eos_id: int, bos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """An id stream whose lines end in ``eos_id`` -> the same stream with ``bos_id`` before
    every line, and for each position the index of its line's ``<s>``."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        raise NgramError("no tokens to count")
    if ids[-1] != eos_id:
        ids = np.append(ids, eos_id)  # a last line without its end marker
    starts = np.concatenate([[0], np.flatnonzero(ids[:-1] == eos_id) + 1])
    stream = np.insert(ids, starts, bos_id)
    bos_pos = starts + np.arange(len(starts))  # where the inserted <s> land
    line_start = np.zeros(len(stream), dtype=np.int64)
    line_start[bos_pos] = bos_pos
    np.maximum.accumulate(line_start, out=line_start)
    return stream, line_start


def _dedup_sorted(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum the counts of equal neighbours of an already sorted key array."""
    if not len(keys):
        return keys, counts
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[first], np.add.reduceat(counts, first)


class RunCounter:
    """Counts int64 keys given in blocks, in bounded memory: each block becomes a sorted run
    of (key, count); when the runs held exceed ``held_bytes`` they are merged into one and
    spilled to ``spill_dir``; ``result`` merges the spilled runs, reading each in blocks that
    together fit ``held_bytes``, and returns (sorted distinct keys, counts), exactly as one
    ``np.unique`` over all keys would."""

    def __init__(self, held_bytes: int, spill_dir: Path, name: str):
        self.held_bytes, self.spill_dir, self.name = held_bytes, spill_dir, name
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.held = 0
        self.spilled: list[Path] = []

    def add(self, keys: np.ndarray) -> None:
        u, c = np.unique(keys, return_counts=True)
        self.runs.append((u, c.astype(np.int64)))
        self.held += u.nbytes + c.nbytes
        if self.held > self.held_bytes:
            self._spill()

    def _merged_held(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.runs) == 1:
            keys, counts = self.runs[0]
        elif self.runs:
            keys = np.concatenate([k for k, _ in self.runs])
            counts = np.concatenate([c for _, c in self.runs])
            self.runs = []
            order = np.argsort(keys, kind="stable")
            keys, counts = _dedup_sorted(keys[order], counts[order])
        else:
            keys, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.runs, self.held = [], 0
        return keys, counts

    def _spill(self) -> None:
        keys, counts = self._merged_held()
        path = self.spill_dir / f"{self.name}-{len(self.spilled)}.bin"
        with open(path, "wb") as f:  # keys then counts, int64, one file per run
            keys.tofile(f)
            counts.tofile(f)
        self.spilled.append(path)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.spilled:
            return self._merged_held()
        if self.runs:
            self._spill()
        merged = [self.spill_dir / f"{self.name}-merged.{part}" for part in ("keys", "counts")]
        # a round holds every run's buffer (16 bytes a key) and ~3 copies while sorting them
        block = max(1024, self.held_bytes // (16 * 4 * len(self.spilled)))
        _merge_files(self.spilled, *merged, block)
        for p in self.spilled:
            p.unlink()
        self.spilled = []
        keys, counts = (np.fromfile(p, dtype=np.int64) for p in merged)
        for p in merged:
            p.unlink()
        return keys, counts


class _Run:
    """A spilled run read back in blocks (plain reads: no mapping that would count as resident
    memory)."""

    def __init__(self, path: Path, block: int):
        self.n = path.stat().st_size // 16
        self.f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.at, self.block = 0, block
        self.keys, self.counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.refill()

    def refill(self) -> None:
        m = min(self.block, self.n - self.at)
        self.f.seek(8 * self.at)
        keys = np.fromfile(self.f, dtype=np.int64, count=m)
        self.f.seek(8 * (self.n + self.at))
        counts = np.fromfile(self.f, dtype=np.int64, count=m)
        self.keys, self.counts = (
            np.concatenate([self.keys, keys]),
            np.concatenate([self.counts, counts]),
        )
        self.at += m

    @property
    def whole(self) -> bool:  # everything left of the run is in the buffer
        return self.at == self.n

    def close(self) -> None:
        self.f.close()


def _merge_files(paths: list[Path], keys_path: Path, counts_path: Path, block: int) -> None:
    """k-way merge of sorted runs into ``keys_path`` and ``counts_path``: each round takes from
    every buffer the keys up to the smallest last key among the buffers that do not yet hold
    their run's end (all keys up to it are then in the buffers), and sums equal keys."""
    runs = [_Run(p, block) for p in paths]
    with open(keys_path, "wb") as fk, open(counts_path, "wb") as fc:
        while any(len(r.keys) for r in runs):
            open_ends = [r.keys[-1] for r in runs if not r.whole and len(r.keys)]
            bound = min(open_ends) if open_ends else None
            ks, cs = [], []
            for r in runs:
                cut = len(r.keys) if bound is None else np.searchsorted(r.keys, bound, "right")
                ks.append(r.keys[:cut])
                cs.append(r.counts[:cut])
                r.keys, r.counts = r.keys[cut:], r.counts[cut:]
                if not len(r.keys) and not r.whole:
                    r.refill()
            keys = np.concatenate(ks)
            order = np.argsort(keys, kind="stable")
            keys, counts = _dedup_sorted(keys[order], np.concatenate(cs)[order])
            keys.tofile(fk)
            counts.tofile(fc)
    for r in runs:
        r.close()


def line_positions(
    ids: np.ndarray, eos_id: int, size: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """The stream in chunks ``[a, b)`` of ``size`` ids, with each token's index in its line
    (0 for a line's first word), carried from chunk to chunk."""
    line_start = 0
    for a in range(0, len(ids), size):
        b = min(a + size, len(ids))
        seg = np.asarray(ids[a:b])
        at = np.arange(a, b, dtype=np.int64)
        starts = np.full(b - a, line_start, dtype=np.int64)
        starts[1:] = np.where(seg[:-1] == eos_id, at[1:], line_start)
        np.maximum.accumulate(starts, out=starts)
        yield a, b, at - starts
        line_start = b if seg[-1] == eos_id else int(starts[-1])


def _chunk_keys(ids, a, b, j, k, base, bos_id, prev_nodes) -> tuple[np.ndarray, np.ndarray]:
    """(positions in the chunk, keys) of the k-grams ending at tokens ``a .. b-1`` (k >= 2).
    The context of the token at line index ``j`` is ``<s>`` for j = 0 (a bigram's only), else
    the (k-1)-gram ending at the token before, read from ``prev_nodes`` (order k-1's indices
    by token, -1 where none ends there); k-grams need ``j >= k - 2``."""
    seg = np.asarray(ids[a:b], dtype=np.int64)
    if k == 2:
        ctx = np.empty(b - a, dtype=np.int64)
        ctx[1:] = seg[:-1]
        if a:
            ctx[0] = ids[a - 1]
        ctx[j == 0] = bos_id
        ok = np.arange(b - a)
    else:
        ctx = _read_nodes(prev_nodes, a - 1, b - 1)
        ok = np.flatnonzero((j >= k - 2) & (ctx >= 0))
    return ok, ctx[ok] * base + seg[ok]


def _read_nodes(path: Path | np.ndarray, a: int, b: int) -> np.ndarray:
    """Indices ``a .. b-1`` of a node file (int64 per token) or array, -1 before the stream."""
    out = np.full(b - a, -1, dtype=np.int64)
    lo = max(a, 0)
    if isinstance(path, np.ndarray):
        out[lo - a :] = path[lo:b]
        return out
    with open(path, "rb") as f:
        f.seek(8 * lo)
        out[lo - a :] = np.fromfile(f, dtype=np.int64, count=b - lo)
    return out


def count_ngrams(
    ids: np.ndarray,
    order: int,
    base: int,
    eos_id: int,
    bos_id: int,
    budget: int,
    progress: Callable[[int], object] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw counts of every order 1..N of an id stream that ends with ``eos_id``: a list of
    (sorted keys, counts), keys as ``ngram.keys`` defines them (order 1: the counted ids,
    ``<s>`` once a line). One pass over the stream per order: order k's keys need the index
    of each token's (k-1)-gram, which the pass before wrote to a file (int64 per token).
    Memory: chunks of ``budget / BYTES_PER_POSITION`` tokens, sorted runs held up to
    ``budget / HELD_SHARE`` and then spilled to a temporary folder (in ``$TMPDIR``), merged
    at the end; beside that, the stream and the result. ``progress``: called with the number
    of chunks, gives a bar (``update``, ``close``) or None."""
    if len(ids) == 0:
        raise NgramError("no tokens to count")
    size = max(MIN_CHUNK, budget // BYTES_PER_POSITION)
    held = budget // HELD_SHARE
    unigrams = np.zeros(base, dtype=np.int64)
    for a in range(0, len(ids), size):
        unigrams += np.bincount(np.asarray(ids[a : a + size]), minlength=base)
    unigrams[bos_id] = unigrams[eos_id]  # one <s> a line: a context, which ARPA lists
    first = np.flatnonzero(unigrams)
    out = [(first, unigrams[first])]
    chunks = -(-len(ids) // size)
    bar = progress(chunks * (2 * order - 3)) if progress is not None and order > 1 else None
    with spill_folder() as tmp:
        prev_nodes = None
        for k in range(2, order + 1):
            trie.check_contexts(len(out[-1][0]) if k > 2 else base, base, k)
            counter = RunCounter(held, Path(tmp), f"order{k}")
            for a, b, j in line_positions(ids, eos_id, size):
                counter.add(_chunk_keys(ids, a, b, j, k, base, bos_id, prev_nodes)[1])
                if bar is not None:
                    bar.update(1)
            table = counter.result()
            out.append(table)
            if k == order:
                break
            nodes = Path(tmp) / f"nodes{k}.bin"  # each token's k-gram index, for order k+1
            with open(nodes, "wb") as f:
                for a, b, j in line_positions(ids, eos_id, size):
                    ok, key = _chunk_keys(ids, a, b, j, k, base, bos_id, prev_nodes)
                    node = np.full(b - a, -1, dtype=np.int64)
                    node[ok] = trie.lookup(table[0], key)[0]
                    node.tofile(f)
                    if bar is not None:
                        bar.update(1)
            if prev_nodes is not None:
                prev_nodes.unlink()
            prev_nodes = nodes
        if bar is not None:
            bar.close()
    return out


@contextmanager
def spill_folder() -> Iterator[str]:
    """A temporary folder in ``$TMPDIR`` (never another one in its place) for spilled runs;
    a write that fails in it (a full or read-only disk) is one error naming the folder."""
    where = os.environ.get("TMPDIR") or tempfile.gettempdir()
    try:
        with tempfile.TemporaryDirectory(prefix="ngram-counts-", dir=where) as tmp:
            yield tmp
    except OSError as e:
        raise NgramError(
            f"{where}: cannot spill n-gram counts there ({reason(e)}); set TMPDIR to a folder "
            "with room"
        ) from None


def continuation_counts(suffix_hi: np.ndarray, n_lo: int) -> np.ndarray:
    """N1+(. x): for each n-gram x of the order below, how many distinct words precede it,
    i.e. how many n-grams of the order above have x as their suffix (``suffix_hi``: each
    one's suffix index; Kneser & Ney 1995; Chen & Goodman 1998 eq. 19)."""
    return np.bincount(suffix_hi, minlength=n_lo).astype(np.int64)


def context_blocks(keys: np.ndarray, base: int, block: int) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of about ``block`` sorted keys that never split a context."""
    a, n = 0, len(keys)
    while a < n:
        b = min(a + block, n)
        if b < n:
            ctx = keys[b] // base
            b2 = int(np.searchsorted(keys, ctx * base, "left"))
            b = b2 if b2 > a else int(np.searchsorted(keys, (ctx + 1) * base, "left"))
        yield a, b
        a = b


def group_by_context(keys: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(unique context keys, index of each n-gram's context among them) of sorted keys."""
    ctx = keys // base
    if not len(ctx):
        return ctx, np.zeros(0, np.int64)
    new = np.concatenate([[True], ctx[1:] != ctx[:-1]])
    return ctx[new], np.cumsum(new) - 1
