"""N-best rescoring: a recogniser's candidates in, the language model's choice and the word
error rate out (``docs/evaluation.md``, "Word error rate").

The score of hypothesis ``h`` of an utterance is

    first_pass(h) + Σ_k α_k ln P_k(h) + β words(h) + γ oov(h)

with ``ln P_k`` the natural-log probability of the hypothesis under LM ``k`` (its ``<eos>``
included, from a fresh ``<eos>`` context), ``words`` its length in the units WER counts, and
``oov`` the number of its tokens outside the first LM's vocabulary. The weights are tuned on
the dev utterances to minimise their corpus WER, then frozen for the test utterances.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqlm.data.corpora import iter_lines
from seqlm.errors import SeqlmError

# The weight grids of the search: 0 and quarter decades over four decades either side of the
# scale that makes a feature's spread within an utterance equal the first pass's (``grids``),
# so that a recogniser whose scores differ by 1e-4 within an utterance and one whose differ by
# tens of nats are both covered. The word bonus and the OOV weight take either sign.
STEPS = tuple(10 ** (k / 4) for k in range(-16, 17))
MAX_SWEEPS = 10

NORMALIZE = ("none", "ptb")
UNITS = ("word", "char")
_CLITICS = re.compile(r"(?i)(n't|'s|'re|'ve|'ll|'d|'m)$")
_NUMBER = re.compile(r"^[+-]?(\d[\d,]*(\.\d+)?|\.\d+)(%|s|th|st|nd|rd)?$")
_PUNCT = re.compile(r"^[\"'.,;:!?()\[\]{}]+|[\"'.,;:!?()\[\]{}]+$")


@dataclass
class NBest:
    """Every hypothesis of an n-best file, grouped by utterance (in order of first mention).

    Attributes:
        utts: utterance ids.
        hyps: per utterance, its hypotheses' text exactly as in the file.
        first_pass: per utterance, their first-pass scores.
        lines: per utterance, the file's line number of each hypothesis.
    """

    utts: list[str] = field(default_factory=list)
    hyps: dict[str, list[str]] = field(default_factory=dict)
    first_pass: dict[str, list[float]] = field(default_factory=dict)
    lines: dict[str, list[int]] = field(default_factory=dict)

    def add(self, utt: str, score: float, hyp: str, line: int) -> None:
        if utt not in self.hyps:
            self.utts.append(utt)
            self.hyps[utt], self.first_pass[utt], self.lines[utt] = [], [], []
        self.hyps[utt].append(hyp)
        self.first_pass[utt].append(score)
        self.lines[utt].append(line)


def _fields(path: Path, what: str, count: int):
    """(line number, fields) of each non-blank line of a tab-separated UTF-8 file."""
    if not path.is_file():
        raise SeqlmError(f"{what}={str(path)!r}: no such file")
    for n, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split("\t", count - 1)
        if len(parts) != count or not parts[0].strip():
            shape = "utt<TAB>first_pass<TAB>hypothesis" if count == 3 else "utt<TAB>reference"
            raise SeqlmError(f"{path}:{n}: expected {shape}, found {line[:60]!r}")
        yield n, [parts[0].strip(), *parts[1:]]


def read_nbest(path: Path) -> NBest:
    """``utt<TAB>first_pass<TAB>hypothesis`` lines; an utterance's lines need not be adjacent."""
    nbest = NBest()
    for n, (utt, score, hyp) in _fields(path, "nbest", 3):
        try:
            value = float(score)
        except ValueError:
            raise SeqlmError(f"{path}:{n}: first_pass {score!r} is not a number") from None
        if math.isnan(value):
            raise SeqlmError(f"{path}:{n}: first_pass is NaN")
        nbest.add(utt, value, hyp, n)
    if not nbest.utts:
        raise SeqlmError(f"{path}: holds no hypotheses")
    return nbest


def read_refs(path: Path) -> dict[str, str]:
    """``utt<TAB>reference`` lines, in file order; an id given twice is refused."""
    refs: dict[str, str] = {}
    seen: dict[str, int] = {}
    for n, (utt, ref) in _fields(path, "refs", 2):
        if utt in refs:
            raise SeqlmError(
                f"{path}:{n}: utterance {utt!r} already has a reference (line {seen[utt]})"
            )
        refs[utt], seen[utt] = ref, n
    if not refs:
        raise SeqlmError(f"{path}: holds no references")
    return refs


def check_pairing(nbest: NBest, refs: dict[str, str], nbest_path: Path, refs_path: Path) -> None:
    """Every utterance has hypotheses and a reference."""
    for utt in refs:
        if utt not in nbest.hyps:
            raise SeqlmError(f"{nbest_path}: utterance {utt!r} of {refs_path} has no hypotheses")
    for utt in nbest.utts:
        if utt not in refs:
            line = nbest.lines[utt][0]
            raise SeqlmError(
                f"{refs_path}: no reference for utterance {utt!r} ({nbest_path}:{line})"
            )


def dev_utterances(dev, refs: dict[str, str]) -> list[str]:
    """The dev part: a fraction ``f`` in [0, 1) (the first ⌈f·N⌉ utterances in the order of
    ``refs``) or a file of utterance ids, one a line."""
    if isinstance(dev, bool):
        raise SeqlmError(f"dev={dev!r} must be a fraction in [0, 1) or a file of utterance ids")
    if isinstance(dev, int | float):
        if not 0 <= dev < 1:
            raise SeqlmError(f"dev={dev!r} must be a fraction in [0, 1) or a file of utterance ids")
        return list(refs)[: math.ceil(dev * len(refs))]
    path = Path(str(dev)).expanduser()
    if not path.is_file():
        raise SeqlmError(f"dev={str(dev)!r}: neither a fraction in [0, 1) nor a file of ids")
    ids = []
    for n, line in enumerate(iter_lines(path), 1):
        utt = line.strip()
        if not utt:
            continue
        if utt not in refs:
            raise SeqlmError(f"{path}:{n}: utterance {utt!r} is not in refs")
        ids.append(utt)
    return list(dict.fromkeys(ids))


# -- text ------------------------------------------------------------------------------------
def ptb_words(text: str) -> list[str]:
    """A recogniser's spelling as Mikolov's PTB spells it: lower case, no punctuation,
    clitics split off (``caller's`` -> ``caller 's``, ``don't`` -> ``do n't``), numbers as
    ``N``."""
    out: list[str] = []
    for word in text.lower().split():
        word = _PUNCT.sub("", word)
        if not word:
            continue
        if _NUMBER.match(word):
            out.append("N")
            continue
        m = _CLITICS.search(word)
        if m and m.start() > 0:
            out.extend([word[: m.start()], m.group(1)])
        else:
            out.append(word)
    return out


def normalised(text: str, normalize: str) -> str:
    """The one normalisation both sides of a WER get, and the text the LM's tokenizer reads:
    Unicode NFKC, white space collapsed; with ``ptb``, ``ptb_words``."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return " ".join(ptb_words(text)) if normalize == "ptb" else text


def units(text: str, unit: str) -> list[str]:
    """What WER counts: whitespace-separated words, or (``char``) the characters without
    white space (CER)."""
    return list("".join(text.split())) if unit == "char" else text.split()


def errors(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions of ``hyp`` against ``ref`` (jiwer)."""
    import jiwer

    if not ref:
        return len(hyp)
    if not hyp:
        return len(ref)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions + out.deletions + out.insertions


def corpus_wer(refs: list[list[str]], hyps: list[list[str]]) -> float:
    """jiwer's corpus WER: all errors over all reference words."""
    import jiwer

    return float(jiwer.wer([" ".join(r) for r in refs], [" ".join(h) for h in hyps]))


# -- the choice and the search ---------------------------------------------------------------
@dataclass
class Table:
    """Every hypothesis of the utterances rescored, utterance by utterance (contiguous).

    Attributes:
        starts: index of each utterance's first hypothesis (U,).
        first_pass: (N,); features: (N, F) the LMs' log-probabilities, then words, then oov.
        errors: (N,) errors against the reference (zeros without references).
        units: per hypothesis, what WER counts of it (its words, or characters).
    """

    starts: np.ndarray
    first_pass: np.ndarray
    features: np.ndarray
    errors: np.ndarray
    units: list[list[str]] = field(default_factory=list)

    def scores(self, weights: np.ndarray) -> np.ndarray:
        """The rescored total of every hypothesis (N,)."""
        return self.first_pass + self.features @ weights

    def choose(self, weights: np.ndarray) -> np.ndarray:
        """Index of each utterance's best-scoring hypothesis (U,); a tie goes to the one listed
        first."""
        score = self.scores(weights)
        best = np.maximum.reduceat(score, self.starts)
        counts = np.diff(np.append(self.starts, len(score)))
        index = np.arange(len(score))
        at_best = np.where(score >= np.repeat(best, counts), index, len(score))
        return np.minimum.reduceat(at_best, self.starts)

    def errors_of(self, weights: np.ndarray) -> int:
        return int(self.errors[self.choose(weights)].sum())

    def oracle(self) -> np.ndarray:
        """Index of each utterance's hypothesis with the fewest errors."""
        return self.choose_by(-self.errors.astype(np.float64))

    def choose_by(self, score: np.ndarray) -> np.ndarray:
        return Table(self.starts, score, np.zeros((len(score), 0)), self.errors).choose(np.zeros(0))


def spread(values: np.ndarray, starts: np.ndarray) -> float:
    """The median over utterances of (largest - smallest) of ``values`` within each, finite
    values only (a recogniser may give a hypothesis a score of -inf)."""
    finite = np.where(np.isfinite(values), values, np.nan)
    widths = np.fmax.reduceat(finite, starts) - np.fmin.reduceat(finite, starts)
    widths = widths[widths > 0]
    return float(np.median(widths)) if len(widths) else 1.0


def grids(table: Table, n_lms: int) -> list[tuple[float, ...]]:
    """The search grid of each weight: the LMs' (non-negative), then the word bonus's and the
    OOV weight's (either sign), each ``STEPS`` times the scale at which the feature moves a
    score as much as the first pass does within an utterance."""
    first = spread(table.first_pass, table.starts)
    out = []
    for k in range(table.features.shape[1]):
        scale = first / spread(table.features[:, k], table.starts)
        magnitudes = [scale * m for m in STEPS]
        signed = k >= n_lms
        out.append((0.0, *magnitudes, *([-m for m in magnitudes] if signed else [])))
    return out


def tune(
    table: Table, grids: list[tuple[float, ...]], joint: tuple[int, int] = (0, 1)
) -> tuple[np.ndarray, list[dict]]:
    """The weights with the fewest errors on the dev part. First a joint search of the two
    weights ``joint`` over their grids, the others 0 (the first LM's weight and the word bonus
    only help together: an LM alone prefers short hypotheses); then coordinate descent from
    there: each weight in turn takes the value of its grid with the fewest errors, the others
    held, until a sweep over all of them changes nothing (at most ``MAX_SWEEPS``). A value
    replaces the current one only if it makes fewer errors, and values are tried smallest
    magnitude first. Returns the weights and each stage's result."""
    weights = np.zeros(len(grids))
    best = table.errors_of(weights)
    trace = [{"stage": "first pass", "errors": best, "weights": weights.tolist()}]
    i, j = joint
    pairs = [(a, b) for a in grids[i] for b in grids[j]]
    for a, b in sorted(pairs, key=lambda ab: abs(ab[0]) + abs(ab[1])):
        trial = weights.copy()
        trial[[i, j]] = a, b
        e = table.errors_of(trial)
        if e < best:
            best, found = e, trial
    weights = found if best < trace[0]["errors"] else weights
    trace.append({"stage": "joint", "errors": best, "weights": weights.tolist()})
    for sweep in range(1, MAX_SWEEPS + 1):
        changed = False
        for k, grid in enumerate(grids):
            for value in sorted(grid, key=abs):
                trial = weights.copy()
                trial[k] = value
                e = table.errors_of(trial)
                if e < best:
                    best, weights, changed = e, trial, True
        trace.append({"stage": f"sweep {sweep}", "errors": best, "weights": weights.tolist()})
        if not changed:
            break
    return weights, trace
