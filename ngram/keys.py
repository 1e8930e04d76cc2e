"""N-gram keys: a trie flattened into sorted int64 arrays, one per order.

With ``B = V + 1`` id values (the vocabulary and ``<s>``), the unigram table holds every id
``0 .. V`` at its own index, and the k-gram ``h w`` (k >= 2) has the key ``c * B + w``, where
``c`` is the index of its context ``h`` in the table of order k - 1. Sorting the keys of an
order sorts its n-grams word by word (contexts were numbered in that order), so the n-grams of
one context are one contiguous run, ``key // B`` is the context's index (its backoff weight is
``logbow[k-2][key // B]``), and ``key % B`` the word predicted.

This is the layout of KenLM's trie, kept as numpy arrays. It was chosen over the packed key
``sum w_i B^(k-i)`` (at most 4 PTB words, or 3 words of a 200k vocabulary, fit 63 bits), over
keys of two int64 words (sorting them takes two passes and doubles the memory) and over hashing
(every key must then be verified against its words): a key stays one int64 at any order, and a
lookup of order k needs only the index found at order k - 1. The limit is on a table's size
and the vocabulary's: ``n_{k-1} * B < 2^63``, so 2^31 words and 2^32 contexts of each order.
"""

from __future__ import annotations

import numpy as np

from ngram.errors import NgramError

MAX_WORDS = 1 << 31

UNK, EOS, BOS = "<unk>", "</s>", "<s>"  # reserved tokens; <s> is id V, context only


def check_vocabulary(vocab_size: int) -> None:
    if vocab_size + 1 > MAX_WORDS:
        raise NgramError(f"{vocab_size} words: at most {MAX_WORDS - 1} fit an n-gram model")


def check_contexts(n_contexts: int, base: int, order: int) -> None:
    """Keys of order ``order`` are ``context index * base + word``: they must fit int64."""
    if n_contexts * base >= 1 << 63:
        raise NgramError(
            f"{n_contexts} distinct {order - 1}-grams with {base - 1} words do not fit 64-bit "
            f"{order}-gram keys ({n_contexts} * {base} >= 2^63)"
        )


SORTED_LOOKUP = 1 << 15  # from this many keys, sort them first


def lookup(table: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each key in a sorted table. Many keys are looked up in sorted order:
    a binary search of sorted keys walks the table's memory in order, and on tables larger than
    the cache that is ~7x faster than random order, the sort included."""
    if not len(table):
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    if len(keys) >= SORTED_LOOKUP and len(table) >= SORTED_LOOKUP:
        order = np.argsort(keys, kind="stable")
        idx = np.empty(len(keys), dtype=np.int64)
        idx[order] = np.searchsorted(table, keys[order])
    else:
        idx = np.searchsorted(table, keys)
    np.minimum(idx, len(table) - 1, out=idx)
    return idx, table[idx] == keys


def from_words(
    cols: np.ndarray, tables: list[np.ndarray], base: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keys of k-grams given as a (n, k) array of word ids, found through ``tables`` (orders
    1 .. k-1, sorted): (keys, prefix_found). A k-gram whose (k-1)-word prefix is not stored
    gets ``prefix_found`` False (and a meaningless key)."""
    n, k = cols.shape
    ctx = np.asarray(cols[:, 0], dtype=np.int64)  # unigram index = word id
    found = np.ones(n, bool)
    for j in range(1, k - 1):
        idx, hit = lookup(tables[j], ctx * base + cols[:, j])
        found &= hit
        ctx = idx
    if k == 1:
        return ctx, found
    return ctx * base + cols[:, k - 1], found


def words_of(
    tables: list[np.ndarray], k: int, base: int, keys: np.ndarray | None = None
) -> np.ndarray:
    """The (n, k) word ids of k-gram keys (all of order k's table when ``keys`` is None)."""
    keys = tables[k - 1] if keys is None else np.asarray(keys, dtype=np.int64)
    cols = np.empty((len(keys), k), dtype=np.int64)
    c = keys
    for j in range(k - 1, 0, -1):
        cols[:, j] = c % base
        c = tables[j - 1][c // base]
    cols[:, 0] = c
    return cols


def suffixes(
    keys: np.ndarray, lower_suffix: np.ndarray | None, lower: np.ndarray, base: int
) -> np.ndarray:
    """For each k-gram ``w_1 .. w_k`` (``keys``, k >= 2) the index of ``w_2 .. w_k`` in the
    table of order k - 1 (``lower``); ``lower_suffix`` maps each (k-1)-gram to its own suffix
    (None for k = 2, where the suffix is the unigram ``w_k``). Every suffix of a counted n-gram
    is counted, so each is found; a table where one is missing gets -1."""
    word = keys % base
    if lower_suffix is None:
        return word
    idx, hit = lookup(lower, lower_suffix[keys // base].astype(np.int64) * base + word)
    return np.where(hit, idx, -1)


def index_dtype(n: int):
    """The narrowest integer type for indices into a table of ``n`` entries (and -1)."""
    return np.int32 if n < 1 << 31 else np.int64
