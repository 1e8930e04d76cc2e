"""CTC decoding fused with a language model: the recogniser's per-frame log-probabilities over
its classes (characters or word pieces, class ``blank`` the CTC blank) in, the text of the best
label sequence under

    score(y) = ln P_ctc(y | x) + α ln P_LM(y) + β units(y)

out, by prefix beam search (Graves 2012; Hannun et al. 2014): every live prefix carries the log
probability of all alignments that emit it and end in a blank (``pb``) or in its last label
(``pnb``), so that a prefix's CTC probability is the sum over its alignments, not the best one.

The LM is any ``StepLM`` (``decoding.step``), driven in batches: after each frame the new
prefixes that survive the beam, of every utterance of the batch, are advanced in one ``advance``
call and their next-token distributions read in one ``next_log_probs`` call; a prefix's
extensions are scored from its parent's distribution, so the LM is asked nothing for the
candidates the beam drops. Two prefixes that reach the same LM state share one row (``select``).

``unit="char"``: each emitted class is one LM token, spelled as the class (a character-level
run: its ``▁`` is the separator); ``unit="word"``: a word is scored when it completes, at a
separator or at the end, and a partial word by its best completion in the LM's vocabulary
(``look-ahead``, the largest ln P(w | history) over the vocabulary words it begins), so that a
prefix is never ranked on a word it has not finished. A word or token outside the LM's
vocabulary is scored as the LM's ``<unk>`` (``docs/evaluation.md``, "Decoding").
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from seqlm.data.vocab import Vocab
from seqlm.decoding.step import StepLM
from seqlm.errors import SeqlmError

SEPARATOR_NAMES = ("<space>", "▁")
UNITS = ("char", "word")
NEG_INF = float("-inf")
LOGSUMEXP_TOLERANCE = 1e-2  # |logsumexp of a frame| above it: not log-probabilities


# -- the recogniser's side -------------------------------------------------------------------
@dataclass
class Alphabet:
    """The recogniser's classes: ``tokens[c]`` is class c's text, ``blank`` the CTC blank;
    separators (``<space>``, ``▁``, or a class whose text is white space, such as PP-OCRv4's
    U+3000) end words."""

    tokens: list[str]
    blank: int = 0
    separator: np.ndarray = field(init=False)

    def __post_init__(self):
        if not 0 <= self.blank < len(self.tokens):
            raise SeqlmError(f"blank={self.blank} is out of range: tokens has {len(self)} classes")
        self.separator = np.asarray(
            [t in SEPARATOR_NAMES or (t.isspace() and t != "") for t in self.tokens]
        )
        self.separator[self.blank] = False

    def __len__(self) -> int:
        return len(self.tokens)

    def text(self, labels: list[int] | tuple[int, ...]) -> str:
        """The text of a label sequence: tokens side by side, a separator as one space, white
        space collapsed."""
        parts = [" " if self.separator[c] else self.tokens[c] for c in labels]
        return " ".join("".join(parts).split())


def read_tokens(path: Path, blank: int = 0) -> Alphabet:
    """One token a line, line k (from 0) the text of class k, read verbatim (a line holding
    U+3000 is that character; only the line ends ``\\n`` or ``\\r\\n`` are taken off)."""
    if not path.is_file():
        raise SeqlmError(f"tokens={str(path)!r}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SeqlmError(
            f"tokens={str(path)!r}: not UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and all(ln.endswith("\r") for ln in lines):
        lines = [ln[:-1] for ln in lines]
    for n, line in enumerate(lines):
        if line == "" and n != blank:
            raise SeqlmError(f"{path}:{n + 1}: class {n} has no text (an empty line)")
    if len(lines) < 2:
        raise SeqlmError(f"tokens={str(path)!r}: {len(lines)} classes; a CTC model has two or more")
    return Alphabet(lines, blank)


def check_posteriors(name: str, array: np.ndarray, classes: int) -> np.ndarray:
    """One utterance's (T, C) natural-log posteriors as float32; refused in one line: not 2-D,
    a class count other than ``tokens``', NaN or +inf, linear probabilities, raw logits."""
    if array.ndim != 2:
        raise SeqlmError(f"{name}: shape {tuple(array.shape)}; expected (frames, classes)")
    if array.shape[1] != classes:
        raise SeqlmError(f"{name}: {array.shape[1]} classes, but tokens lists {classes}")
    if not np.issubdtype(array.dtype, np.floating):
        raise SeqlmError(f"{name}: dtype {array.dtype}; expected floating-point log-probabilities")
    array = np.asarray(array, dtype=np.float32)
    for bad, what in ((np.isnan(array).any(1), "NaN"), (np.isposinf(array).any(1), "+inf")):
        if bad.any():
            raise SeqlmError(f"{name}: {what} at frame {int(bad.argmax())}")
    if len(array) == 0:
        return array
    top = array.max(1, keepdims=True)
    lse = (top + np.log(np.exp(array - top).sum(1, keepdims=True)))[:, 0]
    worst = float(np.abs(lse).max())
    if worst <= LOGSUMEXP_TOLERANCE:
        return array
    sums = array.sum(1)
    if array.min() >= 0 and np.abs(sums - 1).max() <= LOGSUMEXP_TOLERANCE:
        raise SeqlmError(
            f"{name}: linear probabilities (each frame sums to 1); give their natural log "
            "(log_softmax of the model's output)"
        )
    raise SeqlmError(
        f"{name}: not log-probabilities (a frame's logsumexp is {lse.min():.3g} to "
        f"{lse.max():.3g}, not 0): raw logits? give log_softmax of the model's output"
    )


def read_posteriors(path: Path, classes: int) -> dict[str, np.ndarray]:
    """Every utterance's posteriors: a folder of ``UTT.npy`` files (each memory-mapped, then
    checked and read as float32), or one ``.npz`` holding an array per utterance, in name
    order."""
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise SeqlmError(f"posteriors={str(path)!r}: no .npy files in the folder")
        out = {}
        for f in files:
            try:
                array = np.load(f, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise SeqlmError(f"{f}: not a numpy array file ({e})") from None
            out[f.stem] = check_posteriors(str(f), array, classes)
        return out
    if not path.is_file():
        raise SeqlmError(f"posteriors={str(path)!r}: no such file or folder")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as e:
        raise SeqlmError(
            f"posteriors={str(path)!r}: not a .npz file or folder of .npy ({e})"
        ) from None
    if not arrays:
        raise SeqlmError(f"posteriors={str(path)!r}: holds no arrays")
    return {k: check_posteriors(f"{path}[{k}]", arrays[k], classes) for k in sorted(arrays)}


def greedy(logp: np.ndarray, blank: int) -> list[int]:
    """The best path: each frame's most likely class, repeats merged, blanks dropped."""
    best = logp.argmax(1) if len(logp) else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(c) for c in best[keep] if c != blank]


# -- the search ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LMInfo:
    """What the LM knows of a prefix: ``row`` its state in the bank (the state after every
    token it has charged, a pending separator included), ``lm`` the ln P of its charged tokens,
    ``pending`` ln P of a separator not yet followed by a token (char: a trailing separator is
    not text), ``eos`` ln P(</s>) after its text, ``units`` its units (a pending one included),
    ``word`` the partial word (word mode), ``oov`` its tokens the LM does not know."""

    row: int
    lm: float = 0.0
    pending: float = 0.0
    eos: float = 0.0
    units: int = 0
    word: str = ""
    boundary: bool = True  # at the start or after a separator: a separator adds nothing
    oov: int = 0  # charged tokens (words) outside the LM's vocabulary


@dataclass
class Prefix:
    pb: float  # ln P(alignments emitting the prefix, ending in a blank)
    pnb: float  # ... ending in its last label
    last: int  # its last label, -1 if empty
    info: LMInfo

    @property
    def ctc(self) -> float:
        return _logaddexp(self.pb, self.pnb)


@dataclass
class Hypothesis:
    """A finished label sequence and its score's parts."""

    labels: tuple[int, ...]
    ctc: float
    lm: float  # ln P_LM of its text and </s> (0 without an LM)
    units: int
    score: float
    oov: int = 0


class LMBank:
    """The LM states of the live prefixes of a batch, one row each, with the next-token
    distribution of each row (and, in word mode, that distribution in spelling order for the
    look-ahead) in a numpy buffer that grows by doubling: a frame appends its new rows, and
    rows no prefix refers to are dropped only when they outnumber the live ones (``compact``),
    so a frame never copies the whole bank."""

    SLACK = 256  # dead rows tolerated beyond as many as the live ones

    def __init__(self, lm: StepLM, word_order: np.ndarray | None):
        started = time.perf_counter()
        self.lm, self.word_order = lm, word_order
        self.state = lm.start(1)
        first = lm.next_log_probs(self.state).numpy()
        self.dist = np.empty((64, first.shape[1]))
        self.sorted = np.empty((64, len(word_order))) if word_order is not None else None
        self.size = 0
        self._write(first)
        self.calls = 0
        self.seconds = time.perf_counter() - started  # in the LM's calls (the step API's)

    def _write(self, rows: np.ndarray) -> None:
        end = self.size + len(rows)
        if end > len(self.dist):
            grown = max(end, 2 * len(self.dist))
            self.dist = _grown(self.dist, self.size, grown)
            if self.sorted is not None:
                self.sorted = _grown(self.sorted, self.size, grown)
        self.dist[self.size : end] = rows
        if self.sorted is not None:
            self.sorted[self.size : end] = rows[:, self.word_order]
        self.size = end

    def extend(self, parents: list[int], tokens: list[int]) -> int:
        """Append the states of ``parents[i]`` after ``tokens[i]`` (one or more): one batched
        ``advance`` and one ``next_log_probs``; returns the row of the first appended."""
        started = time.perf_counter()
        lm, first = self.lm, self.size
        new = lm.advance(lm.select(self.state, torch.tensor(parents)), torch.tensor(tokens))
        self.state = lm.concat([self.state, new])
        self._write(lm.next_log_probs(new).numpy())
        self.calls += 1
        self.seconds += time.perf_counter() - started
        return first

    def compact(self, live: list[int]) -> dict[int, int] | None:
        """Keep only rows ``live`` (sorted) when the dead ones outnumber them; returns each
        kept row's new number, or None when nothing moved."""
        if self.size <= 2 * len(live) + self.SLACK:
            return None
        started = time.perf_counter()
        self.state = self.lm.select(self.state, torch.tensor(live, dtype=torch.long))
        n = len(live)
        self.dist[:n] = self.dist[live]
        if self.sorted is not None:
            self.sorted[:n] = self.sorted[live]
        self.size = n
        self.seconds += time.perf_counter() - started
        return {row: i for i, row in enumerate(live)}


@dataclass
class Search:
    """The prefix beam search's settings: ``beam`` prefixes kept per frame, at most ``topk``
    classes per frame tried, none below ``prune`` (a natural-log probability; the most likely
    class always); none kept that ranks more than ``threshold`` below the frame's best (as
    flashlight's ``beam_threshold``); ``alpha`` the LM weight, ``beta`` the weight of each
    unit, ``gamma`` the weight of each token (word) outside the LM's vocabulary."""

    beam: int = 16
    topk: int = 32
    prune: float = -10.0
    threshold: float = 15.0
    gamma: float = 0.0
    alpha: float = 0.5
    beta: float = 0.0


class Decoder:
    """Prefix beam search over ``alphabet``'s classes with an optional LM (``lm=None``: CTC
    alone, ``alpha`` is then 0). ``decode`` takes a batch of utterances at once."""

    def __init__(self, alphabet: Alphabet, lm: StepLM | None = None, unit: str = "char"):
        if unit not in UNITS:
            raise SeqlmError(f"unit={unit!r} is not one of {', '.join(UNITS)}")
        self.alphabet, self.lm, self.unit = alphabet, lm, unit
        self.calls = 0  # batched LM calls made (advance + next_log_probs counted once)
        self.lm_seconds = 0.0  # time spent in them
        self.word_order = None
        if lm is None:
            return
        stoi = lm.vocab.stoi
        if unit == "char":
            space = stoi.get("▁", Vocab.unk_id)
            self.lm_id = np.asarray(
                [
                    space if s else stoi.get(t, Vocab.unk_id)
                    for t, s in zip(alphabet.tokens, alphabet.separator)
                ]
            )
            self.oov_class = [
                bool(not s and t not in stoi) for t, s in zip(alphabet.tokens, alphabet.separator)
            ]
        else:
            words = [(w, i) for i, w in enumerate(lm.vocab.itos) if i not in (0, 1)]
            words.sort()
            self.spellings = [w for w, _ in words]
            self.word_order = np.asarray([i for _, i in words], dtype=np.int64)
            self.stoi = stoi

    # -- LM scores of one step --------------------------------------------------------------
    def _lookahead(self, bank: LMBank, row: int, word: str) -> tuple[float, int]:
        """Word mode: the best ln P(w | row) over the vocabulary words that begin with the
        partial ``word``, and 0; ``<unk>``'s and 1 (an unknown word) when none does."""
        if not word:
            return 0.0, 0
        lo = bisect.bisect_left(self.spellings, word)
        hi = bisect.bisect_left(self.spellings, word + "\U0010ffff", lo)
        if hi == lo:
            return float(bank.dist[row, Vocab.unk_id]), 1
        return float(bank.sorted[row, lo:hi].max()), 0

    def _child(self, bank: LMBank, info: LMInfo, c: int) -> tuple[LMInfo, int | None]:
        """The LM's view of a prefix extended by class ``c``, and the LM token its state must
        read (None: its state is the parent's)."""
        sep = bool(self.alphabet.separator[c])
        dist = bank.dist[info.row]
        if self.unit == "char":
            if sep:
                if info.boundary:
                    return info, None
                space = int(self.lm_id[c])
                return replace(
                    info, pending=float(dist[space]), units=info.units + 1, boundary=True
                ), space
            token = int(self.lm_id[c])
            lm = info.lm + info.pending + float(dist[token])
            oov = info.oov + self.oov_class[c]
            return LMInfo(row=-1, lm=lm, units=info.units + 1, boundary=False, oov=oov), token
        if sep:
            if not info.word:
                return info, None
            token = self.stoi.get(info.word, Vocab.unk_id)
            oov = info.oov + (info.word not in self.stoi)
            return LMInfo(-1, info.lm + float(dist[token]), units=info.units + 1, oov=oov), token
        return replace(info, word=info.word + self.alphabet.tokens[c], boundary=False), None

    def _rank_lm(self, bank: LMBank, info: LMInfo) -> tuple[float, int]:
        """The LM part of a live prefix's rank and its unknown tokens: its charged tokens, a
        pending separator, and (word mode) the look-ahead of its partial word."""
        lm = info.lm + info.pending
        if info.word:
            ahead, unknown = self._lookahead(bank, info.row, info.word)
            return lm + ahead, info.oov + unknown
        return lm, info.oov

    def _child_lm(self, bank: LMBank, info: LMInfo, c: int, scores: dict):
        """(LM part of the rank, units, unknown tokens) of a prefix extended by class ``c``,
        without building it (``_child`` builds the few the beam keeps). ``scores``: the
        parent's distribution at each candidate's LM token (char mode)."""
        if self.unit == "char":
            if self.alphabet.separator[c]:
                if info.boundary:
                    return info.lm + info.pending, info.units, info.oov
                return info.lm + scores[c], info.units + 1, info.oov
            oov = info.oov + self.oov_class[c]
            return info.lm + info.pending + scores[c], info.units + 1, oov
        if self.alphabet.separator[c]:
            if not info.word:
                return info.lm, info.units, info.oov
            token = self.stoi.get(info.word, Vocab.unk_id)
            oov = info.oov + (info.word not in self.stoi)
            return info.lm + float(bank.dist[info.row, token]), info.units + 1, oov
        ahead, unknown = self._lookahead(bank, info.row, info.word + self.alphabet.tokens[c])
        return info.lm + ahead, info.units, info.oov + unknown

    # -- the search -------------------------------------------------------------------------
    def decode(self, utterances: list[np.ndarray], search: Search) -> list[Hypothesis]:
        """The best hypothesis of each utterance's (T, C) log-posteriors, all of them searched
        frame by frame together (one LM call per frame for the whole batch)."""
        return [found[0] for found in self.beams(utterances, search)]

    def beams(self, utterances: list[np.ndarray], search: Search) -> list[list[Hypothesis]]:
        """Every hypothesis of each utterance's last beam, finished, best first."""
        s = search if self.lm is not None else replace(search, alpha=0.0)
        bank = LMBank(self.lm, self.word_order) if self.lm is not None else None
        root = LMInfo(row=0, eos=float(bank.dist[0, Vocab.eos_id]) if bank else 0.0)
        beams: list[dict[tuple, Prefix]] = [
            {(): Prefix(0.0, NEG_INF, -1, root)} for _ in utterances
        ]
        for t in range(max((len(u) for u in utterances), default=0)):
            moves: list[tuple[int, tuple, int, int]] = []  # (utt, key, parent row, token)
            for u, logp in enumerate(utterances):
                if t < len(logp):
                    beams[u] = self._frame(bank, beams[u], logp[t], s, moves, u)
            if bank is not None and moves:
                self._advance(bank, beams, moves)
        hyps = self._final(bank, beams, s)
        if bank is not None:
            self.calls += bank.calls
            self.lm_seconds += bank.seconds
        return hyps

    def _candidates(self, frame: np.ndarray, s: Search) -> np.ndarray:
        """The classes tried at a frame: the ``topk`` most likely, none below ``prune`` but
        the most likely one, the blank apart."""
        k = min(s.topk, len(frame))
        top = np.argpartition(-frame, k - 1)[:k] if k < len(frame) else np.arange(len(frame))
        keep = top[(frame[top] >= s.prune) | (top == int(frame.argmax()))]
        return keep[keep != self.alphabet.blank]

    def _frame(self, bank, beam, frame, s: Search, moves, u) -> dict[tuple, Prefix]:
        """One frame of one utterance: every prefix extended by the candidate classes, the
        paths into one prefix summed, the ``beam`` best kept; the kept new prefixes whose LM
        state must read a token are queued in ``moves``. A new prefix has one parent (itself
        minus its last label), so its rank is known from the parent's LM distribution; its
        ``LMInfo`` is built only if the beam keeps it."""
        lp_blank = float(frame[self.alphabet.blank])
        cands = self._candidates(frame, s)
        cand_ids, cand_lp = cands.tolist(), frame[cands].tolist()
        char_lm = bank is not None and self.unit == "char"
        lm_tokens = self.lm_id[cands] if char_lm else None
        alpha, beta, gamma = s.alpha, s.beta, s.gamma
        live: dict[tuple, list] = {}  # key -> [pb, pnb, last, info]: prefixes already live
        new: list[tuple] = []  # (rank, key, pnb, last label, parent's info)
        for key, p in beam.items():
            total, info = p.ctc, p.info
            _add(live, key, total + lp_blank, NEG_INF, p.last, info)
            if p.last >= 0:  # the last label again, no blank between: the same prefix
                _add(live, key, NEG_INF, p.pnb + float(frame[p.last]), p.last, info)
            scores = (
                dict(zip(cand_ids, bank.dist[info.row, lm_tokens].tolist())) if char_lm else None
            )
            for c, lp in zip(cand_ids, cand_lp):
                into = p.pb if c == p.last else total
                if into == NEG_INF:
                    continue
                child = (*key, c)
                if child in beam:  # already live: one more path into it
                    _add(live, child, NEG_INF, into + lp, c, beam[child].info)
                    continue
                if bank is None:
                    lm, units, oov = 0.0, info.units + 1, 0
                else:
                    lm, units, oov = self._child_lm(bank, info, c, scores)
                rank = into + lp + alpha * lm + beta * units + gamma * oov
                new.append((rank, child, into + lp, c, info))
        ranked = [(self._live_rank(bank, e, s), k, e) for k, e in live.items()]
        ranked += [(n[0], n[1], n) for n in new]
        ranked.sort(key=lambda x: x[0], reverse=True)
        floor = ranked[0][0] - s.threshold if ranked else NEG_INF
        out: dict[tuple, Prefix] = {}
        for rank, key, e in ranked[: s.beam]:
            if rank < floor:  # hopeless beside the best: its LM state is never computed
                break
            if isinstance(e, list):  # a live prefix
                out[key] = Prefix(e[0], e[1], e[2], e[3])
                continue
            _, _, pnb, c, parent = e
            if bank is None:
                info, token = replace(parent, units=parent.units + 1), None
            else:
                info, token = self._child(bank, parent, c)
            out[key] = Prefix(NEG_INF, pnb, c, info)
            if token is not None:
                moves.append((u, key, parent.row, token))
        return out

    def _live_rank(self, bank, entry: list, s: Search) -> float:
        pb, pnb, _, info = entry
        lm, oov = self._rank_lm(bank, info) if bank is not None else (0.0, 0)
        return _logaddexp(pb, pnb) + s.alpha * lm + s.beta * info.units + s.gamma * oov

    def _is_pending(self, info: LMInfo) -> bool:
        """Char mode: the prefix ends in a separator that the LM has read but not charged."""
        return self.unit == "char" and info.boundary and info.units > 0

    def _advance(self, bank: LMBank, beams, moves) -> None:
        """The kept prefixes' LM states: one batched ``advance`` and ``next_log_probs`` for
        every new (parent, token) pair of the frame, each pair once; then, now and then, the
        bank drops the rows no live prefix refers to."""
        pairs: dict[tuple[int, int], int] = {}
        for _, _, parent, token in moves:
            pairs.setdefault((parent, token), len(pairs))
        first = bank.extend([p for p, _ in pairs], [t for _, t in pairs])
        for u, k, parent, token in moves:
            row = first + pairs[(parent, token)]
            p = beams[u][k]
            if self._is_pending(p.info):  # the text still ends where the parent's did
                p.info = replace(p.info, row=row)
            else:
                p.info = replace(p.info, row=row, eos=float(bank.dist[row, Vocab.eos_id]))
        live = sorted({p.info.row for b in beams for p in b.values()})
        renumber = bank.compact(live)
        if renumber is not None:
            for beam in beams:
                for p in beam.values():
                    p.info = replace(p.info, row=renumber[p.info.row])

    def _final(self, bank, beams: list[dict[tuple, Prefix]], s: Search) -> list[list]:
        """Each utterance's hypotheses finished, best first (ties in beam order): a word still
        open is completed (word mode, one batched LM call for all of them) and ``</s>``
        charged; a trailing separator charges nothing (char mode)."""
        ends: dict[tuple[int, int], float] = {}
        if bank is not None and self.unit == "word":
            pairs = {
                (p.info.row, self.stoi.get(p.info.word, Vocab.unk_id))
                for b in beams
                for p in b.values()
                if p.info.word
            }
            if pairs:
                started = time.perf_counter()
                rows, tokens = zip(*sorted(pairs))
                lm = self.lm
                state = lm.select(bank.state, torch.tensor(rows))
                end = lm.end_log_probs(lm.advance(state, torch.tensor(tokens))).numpy()
                bank.calls += 1
                bank.seconds += time.perf_counter() - started
                ends = dict(zip(zip(rows, tokens), end.tolist()))
        out = []
        for beam in beams:
            found = []
            for key, p in beam.items():
                info = p.info
                lm, units, oov = info.lm, info.units, info.oov
                if bank is None:
                    lm = 0.0
                elif info.word:
                    token = self.stoi.get(info.word, Vocab.unk_id)
                    lm += float(bank.dist[info.row, token]) + ends[(info.row, token)]
                    units += 1
                    oov += info.word not in self.stoi
                else:
                    lm += info.eos
                    units -= self._is_pending(info)
                score = p.ctc + s.alpha * lm + s.beta * units + s.gamma * oov
                found.append(Hypothesis(key, p.ctc, lm, units, score, oov))
            out.append(sorted(found, key=lambda h: -h.score))
        return out


def _grown(buffer: np.ndarray, used: int, rows: int) -> np.ndarray:
    """``buffer``'s first ``used`` rows in a buffer of ``rows`` rows."""
    out = np.empty((rows, buffer.shape[1]))
    out[:used] = buffer[:used]
    return out


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _add(live: dict, key: tuple, pb: float, pnb: float, last: int, info: LMInfo) -> None:
    """Paths into the live prefix ``key`` (a blank, a repeat, a label into a prefix the beam
    already holds)."""
    entry = live.get(key)
    if entry is None:
        live[key] = [pb, pnb, last, info]
    else:
        entry[0] = _logaddexp(entry[0], pb)
        entry[1] = _logaddexp(entry[1], pnb)


def brute_force(logp: np.ndarray, blank: int) -> dict[tuple[int, ...], float]:
    """ln P_ctc of every label sequence, summed over all C^T alignments (tiny inputs only:
    what the tests check the beam search against)."""
    T, C = logp.shape
    out: dict[tuple[int, ...], float] = {}
    for path in np.ndindex(*([C] * T)):
        labels, prev = [], -1
        for c in path:
            if c != prev and c != blank:
                labels.append(c)
            prev = c
        lp = float(sum(logp[t, c] for t, c in enumerate(path)))
        key = tuple(labels)
        out[key] = float(np.logaddexp(out.get(key, NEG_INF), lp))
    return out


__all__ = [
    "Alphabet",
    "Decoder",
    "Hypothesis",
    "Search",
    "brute_force",
    "greedy",
    "read_posteriors",
    "read_tokens",
]
