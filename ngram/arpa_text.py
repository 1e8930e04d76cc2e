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
        zero_tail = (n5 % 10 ** (5 - col) == 0)
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
