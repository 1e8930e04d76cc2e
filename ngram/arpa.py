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

from ngram.counting import check_fits
from ngram.errors import NgramError
from ngram.model import BOS, EOS, UNK, NgramLM, progress_bar

WRITE_BLOCK = 1 << 16  # n-grams formatted at once

LN10 = math.log(10)


def _fmt(x: float) -> str:
    return "-99" if x == -math.inf else f"{x:.7g}"


def write_arpa(model: NgramLM, path: str | Path) -> None:
    """Write a backoff-form model (every smoothing but additive, MLE and stupid backoff),
    streamed in blocks of n-grams, with a progress bar for a large model on a terminal."""
    if model._uniform is not None or not model.normalized:
        raise NgramError(
            f"smoothing={model.smoothing} has no ARPA form: ARPA backs off to "
            "lower orders, this method does not (or is not normalised)"
        )
    names = [*model.itos, BOS]
    names[model.unk_id], names[model.eos_id] = UNK, EOS  # seqlm's <eos> is ARPA's </s>
    names = np.asarray(names, dtype=object)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    total = sum(len(k) for k in model.keys)
    bar = progress_bar(f"writing {path.name}", total, "n-gram", total)
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for k, keys in enumerate(model.keys, 1):
            f.write(f"ngram {k}={len(keys)}\n")
        for k in range(1, model.order + 1):
            f.write(f"\n\\{k}-grams:\n")
            keys = model.keys[k - 1]
            for a in range(0, len(keys), WRITE_BLOCK):
                f.writelines(_arpa_lines(model, k, keys[a : a + WRITE_BLOCK], a, names))
                if bar is not None:
                    bar.update(min(WRITE_BLOCK, len(keys) - a))
        f.write("\n\\end\\\n")
    if bar is not None:
        bar.close()


def _arpa_lines(model: NgramLM, k: int, keys: np.ndarray, at: int, names: np.ndarray) -> list[str]:
    cols = [names[(keys // model.base ** (k - 1 - j)) % model.base] for j in range(k)]
    text = cols[0] if k == 1 else [" ".join(ws) for ws in zip(*cols)]
    logp = (model.logp[k - 1][at : at + len(keys)] / LN10).tolist()
    if k == model.order:
        return [f"{_fmt(lp)}\t{t}\n" for lp, t in zip(logp, text)]
    bow = (model.logbow[k - 1][at : at + len(keys)] / LN10).tolist()
    return [
        f"{_fmt(lp)}\t{t}\t{_fmt(b)}\n" if b != 0 else f"{_fmt(lp)}\t{t}\n"
        for lp, t, b in zip(logp, text, bow)
    ]


def read_arpa(path: str | Path) -> NgramLM:
    """Read an ARPA file (``.gz`` too), streamed: the file's text is never held, only the
    model's arrays (sized by the header) and the vocabulary. A malformed or truncated file, or
    a log-probability or backoff weight that is not a finite number (``nan``, ``inf``; KenLM's
    ``-99`` for log10 0 is one), gets one error that names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise NgramError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return _parse(path, _Lines(path, f))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise NgramError(f"{path}: cannot read ({e})") from None


class _Lines:
    """A text file's lines with their numbers, one at a time, for errors that name them."""

    def __init__(self, path: Path, f):
        self.path, self.f, self.number = path, f, 0

    def next(self) -> str | None:
        line = self.f.readline()
        if not line:
            return None
        self.number += 1
        return line.rstrip("\r\n")

    def bad(self, why: str) -> NgramError:
        return NgramError(f"{self.path}:{max(self.number, 1)}: {why}")


def _parse(path: Path, lines: _Lines) -> NgramLM:
    while (line := lines.next()) is not None and line.strip() != "\\data\\":
        pass
    if line is None:
        raise NgramError(f"{path}: no \\data\\ header; not an ARPA file")
    sizes: list[int] = []
    while (line := lines.next()) is not None and line.startswith("ngram "):
        m = re.fullmatch(r"ngram (\d+)=(\d+)", line.strip())
        if not m or int(m.group(1)) != len(sizes) + 1:
            raise lines.bad(f"expected 'ngram {len(sizes) + 1}=COUNT', got {line!r}")
        sizes.append(int(m.group(2)))
    if not sizes:
        raise lines.bad("no 'ngram N=COUNT' lines after \\data\\")
    model: NgramLM | None = None
    stoi: dict[str, int] = {}
    bar = progress_bar(f"reading {path.name}", sum(sizes), "n-gram", sum(sizes))
    for k, size in enumerate(sizes, 1):
        while line is not None and not line.strip():
            line = lines.next()
        if line is None or line.strip() != f"\\{k}-grams:":
            raise lines.bad(f"expected \\{k}-grams: (file truncated?)")
        if k == 1:
            unigrams, logp, bow = _section(lines, 1, size)
            model, stoi = _vocabulary(unigrams, len(sizes))
            keys = np.asarray([stoi[w[0]] for w in unigrams], dtype=np.int64)
        else:
            keys, logp, bow = _section(lines, k, size, stoi, model.base)
        if np.any(keys[1:] < keys[:-1]):  # our own files come sorted; sort others
            order_idx = np.argsort(keys, kind="stable")
            keys = keys[order_idx]  # one array at a time: each old one is freed at once
            logp = logp[order_idx]
            bow = bow[order_idx]
            del order_idx
        logp *= LN10
        bow *= LN10
        model.keys.append(keys)
        model.logp.append(logp)
        model.logbow.append(bow)
        del keys, logp, bow
        if bar is not None:
            bar.update(size)
        line = lines.next()
    if bar is not None:
        bar.close()
    while line is not None and not line.strip():
        line = lines.next()
    if line is None or line.strip() != "\\end\\":
        raise lines.bad("missing \\end\\ (file truncated?)")
    return _finish(model)


def _section(lines: _Lines, k: int, size: int, stoi: dict | None = None, base: int = 0):
    """The ``size`` entries of a ``\\k-grams:`` section: log10 p and backoff of each, and
    for unigrams their words, for longer n-grams their keys (made as the lines are read, so
    a multi-GB file's words are never held)."""
    unigrams: list[list[str]] = []
    keys = np.zeros(size if k > 1 else 0, dtype=np.int64)
    logp, bow = np.zeros(size), np.zeros(size)
    for n in range(size):
        line = lines.next()
        if line is None or not line.strip() or line.startswith("\\"):
            raise lines.bad(
                f"{k}-grams section has {n} entries, the header says {size} (file truncated?)"
            )
        parts = line.split()
        if len(parts) not in (k + 1, k + 2):
            raise lines.bad(f"a {k}-gram line needs log10 p, {k} words and an optional backoff")
        try:
            lp = float(parts[0])
            bo = float(parts[k + 1]) if len(parts) == k + 2 else 0.0
        except ValueError:
            raise lines.bad(f"not a number in {line!r}") from None
        if not (math.isfinite(lp) and math.isfinite(bo)):
            raise lines.bad(f"log10 p and backoff must be finite (-99 for log10 0): {line!r}")
        logp[n], bow[n] = lp, bo
        if k == 1:
            unigrams.append(parts[1:2])
            continue
        key = 0
        for w in parts[1 : k + 1]:
            j = stoi.get(w)
            if j is None:
                raise NgramError(f"{lines.path}: {k}-gram word {w!r} is not among the unigrams")
            key = key * base + j
        keys[n] = key
    return (unigrams if k == 1 else keys), logp, bow


def _vocabulary(unigrams: list, order: int) -> tuple[NgramLM, dict[str, int]]:
    """vocabulary: <unk>, </s> first (seqlm's ids 0 and 1), then the unigrams in file order."""
    itos = [UNK, EOS] + [w[0] for w in unigrams if w[0] not in (UNK, EOS, BOS)]
    stoi = {w: j for j, w in enumerate(itos)}
    stoi[BOS] = len(itos)
    check_fits(len(itos), order)
    model = NgramLM(itos, order, "arpa")
    if UNK not in {w[0] for w in unigrams}:
        model.info["note"] = "no <unk> in the file: unseen words get log10 p = -99"
    return model, stoi


def _finish(model: NgramLM) -> NgramLM:
    if "note" in model.info:  # no <unk> in the file: give it a row so lookups never miss
        model.keys[0] = np.sort(np.append(model.keys[0], 0))
        at = np.searchsorted(model.keys[0], 0)
        model.logp[0] = np.insert(model.logp[0], at, -99 * LN10)
        model.logbow[0] = np.insert(model.logbow[0], at, 0.0)
    model.logp[0][model.keys[0] == model.bos_id] = 0.0  # <s> is context only
    return model
