"""ARPA lines made as bytes by numpy, a block of n-grams at a time. Every field is a (n, W)
byte matrix padded with NUL bytes (which ARPA text never holds): the fields are joined side by
side and the NULs dropped in one pass, so no line is ever built by Python. Numbers are written
as ``%.7g`` writes them (7 significant digits, trailing zeros dropped), column by column from
their digits; the few outside 1e-4 <= |x| < 100 (exponent form) go through Python's own ``%``.
Python's formatting alone costs about a microsecond a number and a join a line.
"""

from __future__ import annotations

import numpy as np

DIGITS = 7
WIDTH = 24  # a number's field: three 8-byte words (sign, 2 integer digits, '.'; 5 decimals;
FRACTION = 10  # 5 decimals), NUL-padded; 7 significant digits from 1e-4 up need 10 decimals
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_POWF = 10.0 ** np.arange(-30, 31)


def _words(rows: np.ndarray) -> np.ndarray:
    """(n, 8) bytes -> n little-endian uint64 words (a table gathered 8 bytes at a time)."""
    return np.ascontiguousarray(rows, dtype=np.uint8).view("<u8")[:, 0]


def _tables():
    n5 = np.arange(10**5)
    digits = (ord("0") + (n5[:, None] // 10 ** np.arange(4, -1, -1)) % 10).astype(np.uint8)
    trimmed = digits.copy()  # trailing zeros dropped (all of them for 0)
    for col in range(4, -1, -1):
        zero_tail = n5 % 10 ** (5 - col) == 0
        trimmed[zero_tail, col] = 0
    pad = np.zeros((10**5, 3), dtype=np.uint8)
    full = _words(np.concatenate([digits, pad], 1))
    trim = _words(np.concatenate([trimmed, pad], 1))
    head = np.zeros((2, 100, 2, 8), dtype=np.uint8)  # sign, integer part 0..99, '.'
    head[1, :, :, 0] = ord("-")
    head[:, :, :, 2] = ord("0") + np.arange(100)[:, None] % 10
    head[:, 10:, :, 1] = ord("0") + np.arange(10, 100)[:, None] // 10
    head[:, :, 1, 3] = ord(".")
    return _words(head.reshape(400, 8)), np.concatenate([trim, full]), trim


_HEAD, _HIGH, _LOW = _tables()


def g7(values: np.ndarray) -> np.ndarray:
    """(n, WIDTH) bytes, NUL-padded: ``"%.7g" % v`` of every value, with log10 0 (``-inf``,
    and anything below -99) written as ``-99`` as ARPA files do. Three table lookups a number:
    the sign and integer part, the first five decimals, the last five (trailing zeros
    dropped)."""
    x = np.asarray(values, dtype=np.float64)
    x = np.where(np.isneginf(x) | (x < -99), -99.0, x)
    a = np.abs(x)
    zero = a == 0
    with np.errstate(divide="ignore"):
        e = np.floor(np.log10(np.where(zero, 1.0, a))).astype(np.int64)
    fixed = (e >= -4) & (e <= 1)  # 1e-4 <= |x| < 100: "0.000ddd" .. "dd.ddddd"
    e = np.clip(e, -4, 1)
    m = np.rint(a * _POWF[30 + DIGITS - 1 - e])  # the 7 significant digits (where fixed)
    carry = m >= 10**DIGITS  # 9.9999996 -> 10.00000
    m[carry] = np.rint(m[carry] / 10)
    e = e + carry
    fixed &= (e <= 1) & ~zero
    m = np.where(fixed, m, 0)  # the others are written below, by Python
    p = m.astype(np.int64) * _POW10[e + FRACTION - DIGITS + 1]  # x * 1e10
    whole, frac = np.divmod(p, _POW10[FRACTION])
    hi, lo = np.divmod(frac, _POW10[FRACTION // 2])
    words = np.empty((len(x), 3), dtype=np.uint64)
    words[:, 0] = _HEAD[(x < 0) * 200 + np.minimum(whole, 99) * 2 + (frac != 0)]
    words[:, 1] = _HIGH[hi + (lo != 0) * 10**5]  # trimmed unless decimals follow
    words[:, 2] = _LOW[lo]
    out = words.view(np.uint8).reshape(len(x), WIDTH)
    out[zero] = 0
    out[zero, 2] = ord("0")
    for i in np.flatnonzero(~fixed & ~zero):  # exponent forms (|x| < 1e-4): rare in ARPA files
        out[i] = np.frombuffer((b"%.7g" % x[i]).ljust(WIDTH, b"\0"), dtype=np.uint8)
    return out


class Vocabulary:
    """The words' UTF-8 bytes, one NUL-padded row each, to gather a block's words from."""

    def __init__(self, names: list[str]):
        encoded = [w.encode("utf-8") for w in names]
        self.length = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        width = max(1, int(self.length.max()))
        buf = np.frombuffer(b"".join(w.ljust(width, b"\0") for w in encoded), dtype=np.uint8)
        self.bytes = buf.reshape(len(encoded), width)


def ngram_lines(vocab: Vocabulary, words: np.ndarray, logp, bow=None) -> bytes:
    """ARPA lines ``log10p<TAB>w1 w2 .. wk[<TAB>log10bow]`` of an (n, k) block of word ids;
    ``bow`` None (the highest order) or its values, a 0 left out as lmplz leaves it out."""
    n, k = words.shape
    if n == 0:
        return b""

    def column(byte: int) -> np.ndarray:
        return np.full((n, 1), byte, dtype=np.uint8)

    fields = [g7(logp), column(ord("\t"))]
    for c in range(k):
        ids = words[:, c]
        fields.append(vocab.bytes[ids, : int(vocab.length[ids].max())])
        if c < k - 1:
            fields.append(column(ord(" ")))
    if bow is not None:
        bow = np.asarray(bow)
        field = np.concatenate([column(ord("\t")), g7(bow)], 1)
        field[bow == 0] = 0
        fields.append(field)
    fields.append(column(ord("\n")))
    text = np.concatenate(fields, 1)
    return text[text != 0].tobytes()


# -- reading ---------------------------------------------------------------------------------
_P = np.uint64(0x100000001B3)  # an odd multiplier: invertible modulo 2**64
_P_INV = np.uint64(pow(int(_P), -1, 2**64))
MAX_NUMBER = 32  # longer number fields go to the careful reader
_POWERS: dict[int, np.ndarray] = {}


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) modulo 2**64, kept for the longest block seen."""
    have = _POWERS.get(int(base))
    if have is None or len(have) < n:
        out = np.full(1 << max(20, (n - 1).bit_length()), base, dtype=np.uint64)
        out[0] = 1
        with np.errstate(over="ignore"):
            have = _POWERS[int(base)] = np.cumprod(out, dtype=np.uint64)
    return have[:n]


def word_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A 64-bit polynomial hash of each byte range ``[start, end)`` of ``data``, the same
    for the same bytes wherever they stand (prefix sums of ``b * P**i``, shifted back)."""
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum(data * _powers(_P, len(data)), out=prefix[1:])
        return (prefix[ends] - prefix[starts]) * _powers(_P_INV, len(data) + 1)[starts]


class WordIndex:
    """Word -> id by hash, in an open-addressing table (a slot is the hash's low bits, then
    the next ones): a vectorised dictionary. ``ok`` is False when two words share a hash
    (then the careful reader is used)."""

    PROBES = 16

    def __init__(self, words: list[str]):
        encoded = [w.encode("utf-8") for w in words]
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ends = np.cumsum(lengths)
        h = word_hashes(data, ends - lengths, ends)
        self.ok = len(np.unique(h)) == len(h)
        bits = max(4, int(4 * len(h) - 1).bit_length())  # a quarter full at most
        size = 1 << bits
        self.shift = np.uint64(64 - bits)
        self.hashes = np.zeros(size, dtype=np.uint64)
        self.ids_at = np.full(size, -1, dtype=np.int64)
        slot = self._slot(h)
        todo = np.arange(len(h))
        for _ in range(size):  # place every word; a clash moves on to the next slot
            if not len(todo):
                break
            s = slot[todo]
            free = self.ids_at[s] < 0
            s_free, first = np.unique(s[free], return_index=True)
            placed = todo[free][first]
            self.hashes[s_free], self.ids_at[s_free] = h[placed], placed
            todo = np.setdiff1d(todo, placed, assume_unique=True)
            slot[todo] = (slot[todo] + 1) % size
        found = self.ids(h)  # every word within PROBES slots of its own
        self.ok &= found is not None and bool(np.all(found == np.arange(len(h))))

    def _slot(self, h: np.ndarray) -> np.ndarray:
        """Fibonacci hashing: the top bits of h times 2**64 / golden ratio."""
        with np.errstate(over="ignore"):
            return ((h * np.uint64(0x9E3779B97F4A7C15)) >> self.shift).astype(np.int64)

    def ids(self, h: np.ndarray) -> np.ndarray | None:
        """The ids of the words hashed ``h``, or None if any is not a known word."""
        slot = self._slot(h)
        out = np.full(len(h), -1, dtype=np.int64)
        todo = np.arange(len(h))
        size = len(self.hashes)
        for _ in range(self.PROBES):
            hit = self.hashes[slot[todo]] == h[todo]
            out[todo[hit]] = self.ids_at[slot[todo[hit]]]
            todo = todo[~hit & (self.ids_at[slot[todo]] >= 0)]  # an empty slot: not a word
            if not len(todo):
                break
            slot[todo] = (slot[todo] + 1) % size
        return None if (out < 0).any() else out


def parse_numbers(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """The numbers in ``data[start:end]``, read by numpy's own string-to-float cast (the
    C reader, exactly ``float()``) from a NUL-padded fixed-width view; None if any is not one."""
    n = len(starts)
    if n == 0:
        return np.zeros(0)
    length = ends - starts
    if length.min() < 1 or length.max() > MAX_NUMBER:
        return None
    width = int(length.max())
    cols = np.arange(width)
    c = data[np.minimum(starts[:, None] + cols, len(data) - 1)]
    c[cols >= length[:, None]] = 0
    try:
        return np.ascontiguousarray(c).view(f"S{width}")[:, 0].astype(np.float64)
    except ValueError:
        return None


def parse_block(text: str, k: int, index: WordIndex):
    """(log10 p, log10 backoff, (n, k) word ids) of a block of ``\\k-grams:`` lines laid out
    as KenLM and SRILM write them (``p<TAB>w1 w2 .. wk[<TAB>bow]``, single spaces), or None
    for anything else (the careful reader then names what is wrong)."""
    data = np.frombuffer((text + "\n").encode("utf-8"), dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    n = len(ends)
    if n == 0:
        return None
    starts = np.empty(n, dtype=np.int64)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    is_tab = data == 9
    tabs = np.flatnonzero(is_tab)
    before = np.concatenate([[0], np.cumsum(is_tab)])  # tabs before each position
    first, per_line = before[starts], before[ends] - before[starts]
    if not ((per_line == 1) | (per_line == 2)).all():
        return None
    t1 = tabs[first]
    two = per_line == 2
    t2 = np.where(two, tabs[np.minimum(first + 1, len(tabs) - 1)], ends)
    logp = parse_numbers(data, starts, t1)
    if logp is None:
        return None
    bow = np.zeros(n)
    if two.any():
        parsed = parse_numbers(data, t2[two] + 1, ends[two])
        if parsed is None:
            return None
        bow[two] = parsed
    spaces = np.flatnonzero(data == 32)
    if len(spaces) != n * (k - 1):
        return None
    inner = spaces.reshape(n, k - 1)
    if k > 1 and ((inner[:, 0] <= t1) | (inner[:, -1] >= t2)).any():
        return None  # a space outside the words, or lines with other counts of spaces
    w_start = np.concatenate([(t1 + 1)[:, None], inner + 1], 1)
    w_end = np.concatenate([inner, t2[:, None]], 1)
    if (w_end <= w_start).any():
        return None
    ids = index.ids(word_hashes(data, w_start.ravel(), w_end.ravel()))
    if ids is None:
        return None
    return logp, bow, ids.reshape(n, k)
