"""ARPA files (Doug Paul's format, as KenLM and SRILM write and read them).

    \\data\\
    ngram 1=V
    ...
    \\1-grams:
    log10 p <TAB> w [<TAB> log10 backoff]
    ...
    \\end\\

Reading makes an ``NgramLM`` in backoff form, scored by the same code as a fitted model.
"""

from __future__ import annotations

import gzip
import math
import re
from pathlib import Path

import numpy as np

from ngram.errors import NgramError
from ngram.model import BOS, EOS, UNK, NgramLM

LN10 = math.log(10)


def _fmt(x: float) -> str:
    return "-99" if x == -math.inf else f"{x:.7g}"


def write_arpa(model: NgramLM, path: str | Path) -> None:
    """Write a backoff-form model (every smoothing but additive, MLE and stupid backoff)."""
    if model._uniform is not None or not model.normalized:
        raise NgramError(
            f"smoothing={model.smoothing} has no ARPA form: ARPA backs off to "
            "lower orders, this method does not (or is not normalised)"
        )
    names = [*model.itos, BOS]
    names[model.unk_id], names[model.eos_id] = UNK, EOS  # seqlm's <eos> is ARPA's </s>
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for k, keys in enumerate(model.keys, 1):
            f.write(f"ngram {k}={len(keys)}\n")
        for k in range(1, model.order + 1):
            f.write(f"\n\\{k}-grams:\n")
            keys = model.keys[k - 1]
            words = np.stack(
                [(keys // model.base ** (k - 1 - j)) % model.base for j in range(k)], axis=1
            )
            logp = model.logp[k - 1] / LN10
            bow = model.logbow[k - 1] / LN10
            lines = []
            for row, lp, b in zip(words.tolist(), logp.tolist(), bow.tolist()):
                text = " ".join(names[w] for w in row)
                lines.append(
                    f"{_fmt(lp)}\t{text}\t{_fmt(b)}\n"
                    if k < model.order and b != 0
                    else f"{_fmt(lp)}\t{text}\n"
                )
            f.writelines(lines)
        f.write("\n\\end\\\n")


def read_arpa(path: str | Path) -> NgramLM:
    """Read an ARPA file (``.gz`` too). A malformed or truncated file, or a log-probability or
    backoff weight that is not a finite number (``nan``, ``inf``; KenLM's ``-99`` for log10 0
    is one), gets one error that names the file and line."""
    path = Path(path)
    lines = _read_lines(path)
    sizes, i = _header(path, lines)
    entries = []
    for k, size in enumerate(sizes, 1):
        rows, i = _section(path, lines, i, k, size)
        entries.append(rows)
    rest = [ln.strip() for ln in lines[i:] if ln.strip()]
    if not rest or rest[0] != "\\end\\":
        raise _bad(path, lines, i, "missing \\end\\ (file truncated?)")
    return _model(path, entries)


Entry = tuple[list[str], float, float]  # words, log10 p, log10 backoff


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise NgramError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise NgramError(f"{path}: cannot read ({e})") from None


def _bad(path: Path, lines: list[str], i: int, why: str) -> NgramError:
    return NgramError(f"{path}:{min(i, len(lines) - 1) + 1}: {why}")


def _header(path: Path, lines: list[str]) -> tuple[list[int], int]:
    """The n-gram counts of the ``\\data\\`` section, and the line after it."""
    i = next((j for j, ln in enumerate(lines) if ln.strip() == "\\data\\"), None)
    if i is None:
        raise NgramError(f"{path}: no \\data\\ header; not an ARPA file")
    sizes: list[int] = []
    i += 1
    while i < len(lines) and lines[i].startswith("ngram "):
        m = re.fullmatch(r"ngram (\d+)=(\d+)", lines[i].strip())
        if not m or int(m.group(1)) != len(sizes) + 1:
            raise _bad(path, lines, i, f"expected 'ngram {len(sizes) + 1}=COUNT', got {lines[i]!r}")
        sizes.append(int(m.group(2)))
        i += 1
    if not sizes:
        raise _bad(path, lines, i, "no 'ngram N=COUNT' lines after \\data\\")
    return sizes, i


def _section(path: Path, lines: list[str], i: int, k: int, size: int) -> tuple[list[Entry], int]:
    """The ``size`` entries of the ``\\k-grams:`` section that starts at or after line i."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines) or lines[i].strip() != f"\\{k}-grams:":
        raise _bad(path, lines, i, f"expected \\{k}-grams: (file truncated?)")
    i += 1
    rows = []
    for _ in range(size):
        if i >= len(lines) or not lines[i].strip() or lines[i].startswith("\\"):
            raise _bad(
                path,
                lines,
                i,
                f"{k}-grams section has {len(rows)} entries, the header says {size} "
                "(file truncated?)",
            )
        rows.append(_entry(path, lines, i, k))
        i += 1
    return rows, i


def _entry(path: Path, lines: list[str], i: int, k: int) -> Entry:
    parts = lines[i].split()
    if len(parts) not in (k + 1, k + 2):
        raise _bad(
            path, lines, i, f"a {k}-gram line needs log10 p, {k} words and an optional backoff"
        )
    try:
        lp = float(parts[0])
        bo = float(parts[k + 1]) if len(parts) == k + 2 else 0.0
    except ValueError:
        raise _bad(path, lines, i, f"not a number in {lines[i]!r}") from None
    if not (math.isfinite(lp) and math.isfinite(bo)):
        raise _bad(
            path, lines, i, f"log10 p and backoff must be finite (-99 for log10 0): {lines[i]!r}"
        )
    return parts[1 : k + 1], lp, bo


def _model(path: Path, entries: list[list[Entry]]) -> NgramLM:
    """The backoff-form model of the parsed entries."""
    # vocabulary: <unk>, </s> first (seqlm's ids 0 and 1), then the unigrams in file order
    itos = [UNK, EOS] + [w[0] for w, _, _ in entries[0] if w[0] not in (UNK, EOS, BOS)]
    stoi = {w: j for j, w in enumerate(itos)}
    stoi[BOS] = len(itos)
    model = NgramLM(itos, len(entries), "arpa")
    has_unk = UNK in {w[0] for w, _, _ in entries[0]}
    if not has_unk:
        model.info["note"] = "no <unk> in the file: unseen words get log10 p = -99"
    for k, rows in enumerate(entries, 1):
        keys = np.zeros(len(rows), dtype=np.int64)
        for j in range(k):
            col = [stoi.get(w[j]) for w, _, _ in rows]
            if None in col:
                missing = next(w[j] for w, _, _ in rows if w[j] not in stoi)
                raise NgramError(f"{path}: {k}-gram word {missing!r} is not among the unigrams")
            keys = keys * model.base + np.asarray(col, dtype=np.int64)
        order_idx = np.argsort(keys, kind="stable")
        model.keys.append(keys[order_idx])
        model.logp.append(np.asarray([r[1] for r in rows])[order_idx] * LN10)
        model.logbow.append(np.asarray([r[2] for r in rows])[order_idx] * LN10)
    if not has_unk:  # give <unk> a row so lookups never miss
        model.keys[0] = np.sort(np.append(model.keys[0], 0))
        at = np.searchsorted(model.keys[0], 0)
        model.logp[0] = np.insert(model.logp[0], at, -99 * LN10)
        model.logbow[0] = np.insert(model.logbow[0], at, 0.0)
    model.logp[0][model.keys[0] == model.bos_id] = 0.0  # <s> is context only
    return model
