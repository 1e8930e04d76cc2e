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
import operator
import re
import sys
from pathlib import Path

import numpy as np

from ngram import keys as trie
from ngram.arpa_text import Vocabulary, WordIndex, ngram_lines, parse_block
from ngram.errors import NgramError
from ngram.estimate import progress_bar
from ngram.files import written
from ngram.keys import BOS, EOS, UNK
from ngram.model import NgramLM

WRITE_BLOCK = 1 << 16  # n-grams formatted at once

LN10 = math.log(10)


def write_arpa(model: NgramLM, path: str | Path) -> None:
    """Write a backoff-form model (every smoothing but additive, MLE and stupid backoff),
    streamed in blocks of n-grams, with a progress bar for a large model on a terminal."""
    if not model.has_arpa_form:
        raise NgramError(
            f"smoothing={model.smoothing} has no ARPA form: ARPA backs off to "
            "lower orders, this method does not (or is not normalised)"
        )
    names = [*model.itos, BOS]
    names[model.unk_id], names[model.eos_id] = UNK, EOS  # seqlm's <eos> is ARPA's </s>
    vocab = Vocabulary(names)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    total = sum(len(k) for k in model.keys)
    bar = progress_bar(f"writing {path.name}", total, "n-gram", total)
    with written(path) as tmp, opener(tmp, "wb") as f:
        f.write(b"\\data\\\n")
        for k, keys in enumerate(model.keys, 1):
            f.write(f"ngram {k}={len(keys)}\n".encode())
        for k in range(1, model.order + 1):
            f.write(f"\n\\{k}-grams:\n".encode())
            keys = model.keys[k - 1]
            for a in range(0, len(keys), WRITE_BLOCK):
                f.write(_arpa_lines(model, k, keys[a : a + WRITE_BLOCK], a, vocab))
                if bar is not None:
                    bar.update(min(WRITE_BLOCK, len(keys) - a))
        f.write(b"\n\\end\\\n")
    if bar is not None:
        bar.close()


def _arpa_lines(model: NgramLM, k: int, keys: np.ndarray, at: int, vocab: Vocabulary) -> bytes:
    """A block of ``\\k-grams:`` lines (``ngram.arpa_text``); a backoff weight of 1 (log 0)
    is left out."""
    words = trie.words_of(model.keys, k, model.base, keys)
    logp = model.logp[k - 1][at : at + len(keys)] / LN10
    if k == model.order:
        return ngram_lines(vocab, words, logp)
    return ngram_lines(vocab, words, logp, model.logbow[k - 1][at : at + len(keys)] / LN10)


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
    """A text file's lines with their numbers, for errors that name them: read in chunks of
    ``CHUNK`` characters (a gzip file line by line is slow), handed out one or a block at a
    time."""

    CHUNK = 1 << 22

    def __init__(self, path: Path, f):
        self.path, self.f, self.number = path, f, 0
        self.buf: list[str] = []
        self.pos, self.tail, self.eof = 0, "", False

    def _fill(self) -> bool:
        """Whether a line is waiting (reads the next chunk when the buffer is used up)."""
        while self.pos >= len(self.buf) and not self.eof:
            chunk = self.f.read(self.CHUNK)
            if not chunk:
                self.eof = True
                self.buf, self.tail = ([self.tail] if self.tail else []), ""
            else:
                text = self.tail + chunk
                if "\r" in text:
                    text = text.replace("\r\n", "\n")
                self.buf = text.split("\n")
                self.tail = self.buf.pop()
            self.pos = 0
        return self.pos < len(self.buf)

    def next(self) -> str | None:
        if not self._fill():
            return None
        line = self.buf[self.pos]
        self.pos += 1
        self.number += 1
        return line

    def block(self, n: int) -> list[str]:
        """The next ``n`` lines (fewer at the end of the file), without their line ends."""
        out: list[str] = []
        while len(out) < n and self._fill():
            take = self.buf[self.pos : self.pos + n - len(out)]
            out.extend(take)
            self.pos += len(take)
        self.number += len(out)
        return out

    def bad(self, why: str) -> NgramError:
        return self.bad_at(self.number, why)

    def bad_at(self, number: int, why: str) -> NgramError:
        return NgramError(f"{self.path}:{max(number, 1)}: {why}")


def _header(path: Path, lines: _Lines) -> tuple[list[int], str | None]:
    """The n-gram counts of the ``\\data\\`` header, and the line after it."""
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
    return sizes, line


def _parse(path: Path, lines: _Lines) -> NgramLM:
    sizes, line = _header(path, lines)
    # the arrays are sized by the header: a count the file cannot hold (a k-gram's line takes
    # at least 2k + 2 bytes; deflate expands at most ~1032x) is refused before any allocation
    room = path.stat().st_size * (1100 if path.suffix == ".gz" else 1)
    for k, size in enumerate(sizes, 1):
        if size * (2 * k + 2) > room:
            raise NgramError(
                f"{path}: the header claims {size} {k}-grams, more than its "
                f"{path.stat().st_size} bytes can hold"
            )
    model: NgramLM | None = None
    bar = progress_bar(f"reading {path.name}", sum(sizes), "n-gram", sum(sizes))
    for k, size in enumerate(sizes, 1):
        while line is not None and not line.strip():
            line = lines.next()
        if line is None or line.strip() != f"\\{k}-grams:":
            raise lines.bad(f"expected \\{k}-grams: (file truncated?)")
        if k == 1:
            words, logp, bow = _section(lines, 1, size)
            model = _vocabulary(lines, words, len(sizes))
            model._word_index = WordIndex([*model.itos, BOS])  # ids by position
            keys = np.asarray([model.stoi[w] for w in words], dtype=np.int64)
            del words
        else:
            (keys, added), logp, bow = _section(lines, k, size, model)
            if added:
                model.info["added_contexts"] = model.info.get("added_contexts", 0) + added
        order_idx = np.argsort(keys)  # files list n-grams in any order (keys are distinct)
        keys = keys[order_idx]  # one array at a time: each old one is freed at once
        logp = logp[order_idx]
        bow = bow[order_idx]
        del order_idx
        if len(keys) > 1 and not np.all(keys[1:] != keys[:-1]):
            raise NgramError(f"{path}: a {k}-gram is listed twice in the \\{k}-grams: section")
        logp *= LN10
        bow *= LN10
        model.keys.append(keys)
        model.logp.append(logp)
        model.logbow.append(bow)
        if k == 1:
            _finish_unigrams(model)
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
    model._stoi.pop(BOS)  # the vocabulary proper; <s> is context only, found by its id
    del model._word_index
    added = model.info.get("added_contexts", 0)
    if added:
        print(
            f"{path}: {added} n-grams are listed without their context; added the contexts "
            "with backoff 0 and their backed-off probabilities (no score changes)",
            file=sys.stderr,
        )
    return model


READ_BLOCK = 1 << 16  # lines parsed at once


def _section(lines: _Lines, k: int, size: int, model: NgramLM | None = None):
    """The ``size`` entries of a ``\\k-grams:`` section, read in blocks of lines: log10 p and
    backoff of each, and for unigrams their words, for longer n-grams their keys (made block by
    block, so a multi-GB file's words are never held)."""
    unigrams: list[str] = []
    missing: list[np.ndarray] = []  # word ids of n-grams whose context the file does not list
    keys = np.zeros(size if k > 1 else 0, dtype=np.int64)
    logp, bow = np.zeros(size), np.zeros(size)
    for at in range(0, size, READ_BLOCK):
        first = lines.number + 1
        block = lines.block(min(READ_BLOCK, size - at))
        whole = len(block) == min(READ_BLOCK, size - at)
        got = (_fast_block(block, k, model) if whole else None) or _checked_block(
            lines, first, block, k, model, at, size
        )
        lp, bo, words = got
        logp[at : at + len(block)], bow[at : at + len(block)] = lp, bo
        if k == 1:
            unigrams.extend(words)
        else:
            keys[at : at + len(block)] = _keys(words, model, missing)
    if k == 1:
        return unigrams, logp, bow
    added = 0
    if missing:
        keys, added = _add_contexts(model, keys, np.concatenate(missing))
    return (keys, added), logp, bow


def _fast_block(block: list[str], k: int, model: NgramLM | None):
    """(log10 p, backoff, words or (n, k) ids) of a block laid out as KenLM and SRILM write
    it, or None for anything else, left to ``_checked_block`` (which names what is wrong).
    Longer n-grams are parsed by numpy as bytes (``arpa_text.parse_block``)."""
    index = getattr(model, "_word_index", None)
    if k > 1 and index is not None and index.ok:
        got = parse_block("\n".join(block), k, index)
        if got is not None and np.isfinite(got[0]).all() and np.isfinite(got[1]).all():
            return got
    fields = _tab_separated(block, k)
    if fields is None:
        return None
    lp_text, words, rows, bo_text = fields
    n = len(block)
    try:
        lp = np.array(lp_text, dtype=np.float64)
        bo = np.zeros(n)
        bo[rows] = np.array(bo_text, dtype=np.float64)
        if k > 1:
            words = np.fromiter(map(model.stoi.__getitem__, words), np.int64, n * k)
            words = words.reshape(n, k)
    except (ValueError, KeyError):
        return None
    if not (np.isfinite(lp).all() and np.isfinite(bo).all()):
        return None
    return lp, bo, words


def _checked_block(lines: _Lines, first: int, block: list[str], k: int, model, at: int, size: int):
    """A block read word by word (any white space): the same result as ``_fast_block``, or one
    error that names the line."""
    toks = [ln.split() for ln in block]
    n = len(toks)
    width = np.fromiter(map(len, toks), dtype=np.int64, count=n)
    short = n < min(READ_BLOCK, size - at)
    wrong = np.flatnonzero((width != k + 1) & (width != k + 2))
    if len(wrong) or short:
        i = int(wrong[0]) if len(wrong) else n
        if i == n or not block[i].strip() or block[i].startswith("\\"):
            raise lines.bad_at(
                first + i,
                f"{k}-grams section has {at + i} entries, the header says {size} (file truncated?)",
            )
        raise lines.bad_at(
            first + i, f"a {k}-gram line needs log10 p, {k} words and an optional backoff"
        )
    try:
        lp = np.array([t[0] for t in toks], dtype=np.float64)
        has_bow = np.flatnonzero(width == k + 2)
        bo = np.zeros(n)
        bo[has_bow] = np.array([toks[i][k + 1] for i in has_bow], dtype=np.float64)
    except ValueError:
        i = next(i for i, t in enumerate(toks) if not _numbers(t[:1] + t[k + 1 :]))
        raise lines.bad_at(first + i, f"not a number in {block[i]!r}") from None
    finite = np.isfinite(lp) & np.isfinite(bo)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise lines.bad_at(
            first + i, f"log10 p and backoff must be finite (-99 for log10 0): {block[i]!r}"
        )
    if k == 1:
        return lp, bo, [t[1] for t in toks]
    get = model.stoi.get
    ids = np.fromiter(
        (get(w, -1) for t in toks for w in t[1 : k + 1]), dtype=np.int64, count=n * k
    ).reshape(n, k)
    unknown = np.flatnonzero((ids < 0).any(1))
    if len(unknown):
        i = int(unknown[0])
        w = next(w for w in toks[i][1 : k + 1] if w not in model.stoi)
        raise lines.bad_at(first + i, f"{k}-gram word {w!r} is not among the unigrams")
    return lp, bo, ids


def _tab_separated(block: list[str], k: int):
    """The fields of a block whose lines are ``p<TAB>w1 .. wk[<TAB>bow]`` with single spaces, as
    KenLM and SRILM write them: (p texts, the n*k words, rows with a backoff, their texts); None
    for any other layout. Split a group of lines at a time, as one string: a split per line
    would cost more than the rest of the reading."""
    n = len(block)
    tabs = np.fromiter(map(_count_tabs, block), dtype=np.int64, count=n)
    if not ((tabs == 1) | (tabs == 2)).all():
        return None
    lp_text, words_text = np.empty(n, dtype=object), np.empty(n, dtype=object)
    rows = np.flatnonzero(tabs == 2)
    bo_text: list[str] = []
    for width in (2, 3):
        at = rows if width == 3 else np.flatnonzero(tabs == 1)
        if not len(at):
            continue
        group = block if len(at) == n else [block[i] for i in at]
        fields = "\t".join(group).split("\t")
        lp_text[at], words_text[at] = fields[0::width], fields[1::width]
        if width == 3:
            bo_text = fields[2::3]
    words = " ".join(words_text.tolist()).split(" ")
    if len(words) != k * n or "" in words:
        return None
    return lp_text.tolist(), words, rows, bo_text


_count_tabs = operator.methodcaller("count", "\t")


def _keys(block_ids: np.ndarray, model: NgramLM, missing: list[np.ndarray]):
    """The trie keys of a block's n-grams (word ids (n, k)); those whose context the file does
    not list get -1 and their word ids go to ``missing`` (``_add_contexts`` inserts them)."""
    key, found = trie.from_words(block_ids, model.keys, model.base)
    if not found.all():
        key[~found] = -1
        missing.append(block_ids[~found])
    return key


def _add_contexts(model: NgramLM, keys: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, int]:
    """Order k's ``keys`` (those of the n-grams listed, -1 for ``missing`` ones, whose (k-1)-word
    contexts the file does not list), completed as Kaldi's arpa2fst completes such files
    (SRILM's pruning writes them; KenLM refuses them): each missing context is inserted with
    backoff 0 and the probability that backing off gives it, lower orders first, so that every
    score stays what the ARPA backoff rule gives. Returns the keys and the number inserted."""
    k = missing.shape[1]
    contexts = np.unique(missing[:, :-1], axis=0)
    remap, added = _insert(model, k - 1, contexts)
    found = keys >= 0
    keys[found] = remap[keys[found] // model.base] * model.base + keys[found] % model.base
    missing_keys, ok = trie.from_words(missing, model.keys, model.base)
    assert ok.all()
    keys[~found] = missing_keys
    return keys, added


def _insert(model: NgramLM, j: int, grams: np.ndarray) -> tuple[np.ndarray, int]:
    """Insert the ``grams`` (m, j) that order j's table lacks (their own missing contexts
    first, recursively), with backoff 0 and the backed-off probability. Returns the map from
    the table's old indices to its new ones, and how many n-grams were inserted."""
    base = model.base
    old = model.keys[j - 1]
    if j == 1:  # a unigram cannot be missing: its word would be unknown (refused before)
        return np.arange(len(old), dtype=np.int64), 0
    keys, ok = trie.from_words(grams, model.keys, base)
    added = 0
    if not ok.all():  # a context of a context is missing too
        remap, added = _insert(model, j - 1, np.unique(grams[~ok][:, :-1], axis=0))
        old = model.keys[j - 1]
        old = remap[old // base] * base + old % base
        model.keys[j - 1] = old
        keys, ok = trie.from_words(grams, model.keys, base)
    at, present = trie.lookup(old, keys)
    new_grams, new_keys = grams[~present], keys[~present]
    if not len(new_keys):
        return np.arange(len(old), dtype=np.int64), added
    logp = _backed_off(model, new_grams)
    merged = np.concatenate([old, new_keys])
    order = np.argsort(merged, kind="stable")
    model.keys[j - 1] = merged[order]
    model.logp[j - 1] = np.concatenate([model.logp[j - 1], logp])[order]
    model.logbow[j - 1] = np.concatenate([model.logbow[j - 1], np.zeros(len(logp))])[order]
    remap = np.empty(len(merged), dtype=np.int64)
    remap[order] = np.arange(len(merged))
    return remap[: len(old)], added + len(new_keys)


def _backed_off(model: NgramLM, grams: np.ndarray) -> np.ndarray:
    """ln p of each gram's last word given the words before it, by backing off through the
    tables already read (a gram not stored: its context's backoff, 0 when the context is not
    stored either, plus the gram one word shorter)."""
    base, j = model.base, grams.shape[1]
    if j == 1:
        return model.logp[0][grams[:, 0]]
    keys, ok = trie.from_words(grams, model.keys, base)
    at, hit = trie.lookup(model.keys[j - 1], keys)
    hit &= ok
    out = np.empty(len(grams))
    out[hit] = model.logp[j - 1][at[hit]]
    if (~hit).any():
        rest = grams[~hit]
        ctx = rest[:, :-1]
        ctx_keys, ctx_ok = trie.from_words(ctx, model.keys, base)
        if ctx.shape[1] == 1:
            ctx_at, ctx_hit = ctx[:, 0], np.ones(len(ctx), bool)
        else:
            ctx_at, ctx_hit = trie.lookup(model.keys[j - 2], ctx_keys)
            ctx_hit &= ctx_ok
        bow = np.where(ctx_hit, model.logbow[j - 2][np.where(ctx_hit, ctx_at, 0)], 0.0)
        out[~hit] = bow + _backed_off(model, rest[:, 1:])
    return out


def _numbers(texts: list[str]) -> bool:
    try:
        [float(t) for t in texts]
    except ValueError:
        return False
    return True


def _vocabulary(lines: _Lines, unigrams: list[str], order: int) -> NgramLM:
    """vocabulary: <unk>, </s> first (seqlm's ids 0 and 1), then the unigrams in file order.
    ``</s>`` and ``<s>`` must be there (as KenLM requires): without ``</s>`` no sentence
    could end, and every score would be undefined."""
    listed = set(unigrams)
    for marker in (EOS, BOS):
        if marker not in listed:
            raise NgramError(
                f"{lines.path}: the \\1-grams: section has no {marker}; an ARPA model needs "
                f"{EOS} and {BOS} (KenLM refuses such a file too)"
            )
    itos = [UNK, EOS] + [w for w in unigrams if w not in (UNK, EOS, BOS)]
    trie.check_vocabulary(len(itos))
    model = NgramLM(itos, order, "arpa")
    model._stoi = {w: j for j, w in enumerate(itos)}
    model._stoi[BOS] = len(itos)
    if UNK not in listed:
        model.info["note"] = "no <unk> in the file: unseen words get log10 p = -99"
    return model


def _finish_unigrams(model: NgramLM) -> None:
    """Every id gets its unigram row (``<unk>`` at log10 p = -99 when the file has none), so
    that the unigram table is indexed by id; ``<s>`` is context only."""
    if "note" in model.info:
        model.keys[0] = np.sort(np.append(model.keys[0], model.unk_id))
        at = np.searchsorted(model.keys[0], model.unk_id)
        model.logp[0] = np.insert(model.logp[0], at, -99 * LN10)
        model.logbow[0] = np.insert(model.logbow[0], at, 0.0)
    model.logp[0][model.bos_id] = 0.0
