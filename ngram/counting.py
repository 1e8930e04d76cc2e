"""Counting n-grams with vectorised numpy: every n-gram packed into one int64 key.

A sentence ``w_1 .. w_n`` is read as ``<s> w_1 .. w_n </s>`` (one ``<s>``, as KenLM does):
the n-grams are all runs of 1..N tokens inside that padded line, so ``<s>`` is context only
and the first word is predicted from the context ``<s>``. With ``B = V + 1`` id values (the
vocabulary plus ``<s>``), the n-gram ``w_1 .. w_k`` has key ``sum_i w_i B^(k-i)``: keys sort by
context first, ``key // B`` is the context and ``key % B`` the predicted word.
"""

from __future__ import annotations

import numpy as np

from ngram.errors import NgramError

CHUNK = 1 << 22  # positions per counting chunk: memory follows distinct n-grams, not tokens


def check_fits(vocab_size: int, order: int) -> None:
    base = vocab_size + 1
    if base**order >= 2**63:
        raise NgramError(
            f"order={order} with {vocab_size} words does not fit 64-bit n-gram keys "
            f"({base}^{order} >= 2^63); lower the order or the vocabulary size"
        )


def pad_sentences(ids: np.ndarray, eos_id: int, bos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """An id stream whose lines end in ``eos_id`` -> the same stream with ``bos_id`` before
    every line, and for each position the index of its line's ``<s>``."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        raise NgramError("no tokens to count")
    if ids[-1] != eos_id:
        ids = np.append(ids, eos_id)  # a last line without its end marker
    ends = np.flatnonzero(ids == eos_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    out = np.insert(ids, starts, bos_id)
    bos_pos = starts + np.arange(len(starts))  # where the inserted <s> land
    line_start = np.zeros(len(out), dtype=np.int64)
    line_start[bos_pos] = bos_pos
    np.maximum.accumulate(line_start, out=line_start)
    return out, line_start


def keys_at(stream: np.ndarray, ends: np.ndarray, k: int, base: int) -> np.ndarray:
    """Keys of the k-grams ending at positions ``ends``."""
    key = np.zeros(len(ends), dtype=np.int64)
    for j in range(k - 1, -1, -1):
        key = key * base + stream[ends - j]
    return key


def merge_counts(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum the counts of equal keys; keys come back sorted."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


def count_ngrams(
    stream: np.ndarray, line_start: np.ndarray, order: int, base: int, bos_id: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw counts of every order 1..N: a list of (sorted keys, counts). Works chunk by chunk,
    merging as it goes, so memory is bounded by the number of distinct n-grams."""
    out = []
    pos = np.arange(len(stream), dtype=np.int64)
    for k in range(1, order + 1):
        # k-grams inside the padded line; the token predicted is never <s> itself (but the
        # unigram <s> is kept: it is a context, and ARPA lists it)
        ok = pos - line_start >= k - 1
        if k > 1:
            ok &= stream != bos_id
        ends = pos[ok]
        keys, counts = np.empty(0, np.int64), np.empty(0, np.int64)
        for a in range(0, len(ends), CHUNK):
            u, c = np.unique(keys_at(stream, ends[a : a + CHUNK], k, base), return_counts=True)
            keys, counts = merge_counts(np.concatenate([keys, u]), np.concatenate([counts, c]))
        out.append((keys, counts))
    return out


def continuation_counts(
    keys_hi: np.ndarray, keys_lo: np.ndarray, k_lo: int, base: int
) -> np.ndarray:
    """N1+(. x): for each k_lo-gram x of ``keys_lo``, how many distinct words precede it among
    the (k_lo+1)-grams ``keys_hi`` (Kneser & Ney 1995; Chen & Goodman 1998 eq. 19)."""
    suffix = keys_hi % base**k_lo
    u, c = np.unique(suffix, return_counts=True)
    out = np.zeros(len(keys_lo), dtype=np.int64)
    idx = np.searchsorted(keys_lo, u)
    out[idx] = c  # every suffix of a seen n-gram is itself a seen n-gram
    return out


def group_by_context(keys: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """(unique context keys, index of each n-gram's context among them)."""
    ctx = keys // base
    uniq, inverse = np.unique(ctx, return_inverse=True)
    return uniq, inverse
