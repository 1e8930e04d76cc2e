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
        first_pass: per utterance, the score the rescoring starts from: the recogniser's total
            (three columns, or a ``first_pass`` column alone), or its acoustic score ``am``
            when ``am`` and ``lm`` come apart.
        lines: per utterance, the file's line number of each hypothesis (or, for SRILM's
            per-utterance files, the line in that file).
        old_lm: per utterance, the recogniser's LM score of each hypothesis (``lm``), or
            None when the file gives the total only.
        first_choice: per utterance, the index of the first pass's answer: the best
            ``first_pass`` (given), else the first hypothesis listed (``am``/``lm`` without
            ``first_pass``).
    """

    utts: list[str] = field(default_factory=list)
    hyps: dict[str, list[str]] = field(default_factory=dict)
    first_pass: dict[str, list[float]] = field(default_factory=dict)
    lines: dict[str, list[int]] = field(default_factory=dict)
    old_lm: dict[str, list[float]] | None = None
    totals: dict[str, list[float]] | None = None  # a first_pass column beside am and lm

    def add(self, utt: str, score: float, hyp: str, line: int, old_lm=None, total=None) -> None:
        if utt not in self.hyps:
            self.utts.append(utt)
            self.hyps[utt], self.first_pass[utt], self.lines[utt] = [], [], []
            if self.old_lm is not None:
                self.old_lm[utt] = []
            if self.totals is not None:
                self.totals[utt] = []
        self.hyps[utt].append(hyp)
        self.first_pass[utt].append(score)
        self.lines[utt].append(line)
        if self.old_lm is not None:
            self.old_lm[utt].append(old_lm)
        if self.totals is not None:
            self.totals[utt].append(total)

    def first_choice(self, utt: str) -> int:
        scores = self.totals[utt] if self.totals is not None else self.first_pass[utt]
        if self.old_lm is not None and self.totals is None:
            return 0  # am and lm apart, no total: the recogniser listed its answer first
        return int(np.argmax(scores))  # the first of tied scores


COLUMNS = ("utt", "am", "lm", "first_pass", "text")  # an n-best file's header may name these


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


def _number(path, n: int, name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SeqlmError(f"{path}:{n}: {name} {value!r} is not a number") from None
    if math.isnan(number):
        raise SeqlmError(f"{path}:{n}: {name} is NaN")
    return number


def header_columns(path: Path, first: str) -> list[str] | None:
    """The columns a header line names (``utt am lm words text``: any order, ``text`` last;
    ``words`` and other counts the rescoring makes itself are read and ignored), or None
    when the first line is a hypothesis."""
    names = [x.strip() for x in first.rstrip("\n").split("\t")]
    if names[-1] != "text" or "utt" not in names:
        return None
    known = {*COLUMNS, "words", "nwords"}
    for name in names:
        if name not in known:
            raise SeqlmError(
                f"{path}:1: unknown column {name!r}; the header names utt, am, lm, first_pass, "
                "words and text (last)"
            )
    if len(set(names)) != len(names):
        raise SeqlmError(f"{path}:1: a column is named twice: {' '.join(names)}")
    if ("am" in names) != ("lm" in names):
        raise SeqlmError(f"{path}:1: am and lm come together (the old LM's weight is tuned)")
    if "am" not in names and "first_pass" not in names:
        raise SeqlmError(f"{path}:1: no score column: give am and lm, or first_pass")
    return names


def read_nbest(path: Path) -> NBest:
    """An n-best list: ``utt<TAB>first_pass<TAB>hypothesis`` lines, or a header line naming the
    columns (``utt am lm first_pass text``, ``text`` last), or a folder of SRILM plain n-best
    files (``read_srilm``). An utterance's lines need not be adjacent."""
    if path.is_dir():
        return read_srilm(path)
    if not path.is_file():
        raise SeqlmError(f"nbest={str(path)!r}: no such file")
    first = next((ln for ln in iter_lines(path) if ln.strip()), "")
    names = header_columns(path, first)
    nbest = NBest() if names is None else _named_nbest(path, names)
    if names is None:
        for n, (utt, score, hyp) in _fields(path, "nbest", 3):
            nbest.add(utt, _number(path, n, "first_pass", score), hyp, n)
    if not nbest.utts:
        raise SeqlmError(f"{path}: holds no hypotheses")
    return nbest


def _named_nbest(path: Path, names: list[str]) -> NBest:
    apart = "am" in names
    nbest = NBest(
        old_lm={} if apart else None, totals={} if apart and "first_pass" in names else None
    )
    col = {name: i for i, name in enumerate(names)}
    header_seen = False
    for n, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            continue
        if not header_seen:
            header_seen = True
            continue
        parts = line.split("\t", len(names) - 1)
        if len(parts) != len(names) or not parts[0].strip():
            raise SeqlmError(
                f"{path}:{n}: expected {len(names)} tab-separated fields "
                f"({' '.join(names)}), found {line[:60]!r}"
            )
        get = {name: parts[i] for name, i in col.items()}
        utt, text = get["utt"].strip(), get["text"]
        if apart:
            am, lm = (_number(path, n, k, get[k]) for k in ("am", "lm"))
            total = (
                _number(path, n, "first_pass", get["first_pass"])
                if nbest.totals is not None
                else None
            )
            nbest.add(utt, am, text, n, lm, total)
        else:
            nbest.add(utt, _number(path, n, "first_pass", get["first_pass"]), text, n)
    return nbest


def read_srilm(folder: Path) -> NBest:
    """SRILM's plain n-best format: a file per utterance (its id the file name up to the first
    dot), a hypothesis a line, ``ascore lmscore nwords w1 w2 ...``, best first: ``am`` and
    ``lm`` apart, the first line the first pass's answer."""
    files = sorted(f for f in folder.iterdir() if f.is_file())
    if not files:
        raise SeqlmError(
            f"nbest={str(folder)!r}: an empty folder (SRILM n-best: a file per utterance)"
        )
    nbest = NBest(old_lm={})
    for f in files:
        utt = f.name.split(".", 1)[0]
        if utt in nbest.hyps:
            raise SeqlmError(f"{f}: utterance {utt!r} has another file in {folder}")
        for n, line in enumerate(iter_lines(f), 1):
            if not line.strip():
                continue
            if line.startswith("NBestList"):
                raise SeqlmError(
                    f"{f}:{n}: SRILM's {line.split()[0]} format; give the plain "
                    "one (ascore lmscore nwords w1 w2 ...)"
                )
            parts = line.split()
            if len(parts) < 3:
                raise SeqlmError(
                    f"{f}:{n}: expected ascore lmscore nwords w1 w2 ..., found {line[:60]!r}"
                )
            am, lm = (_number(f, n, k, v) for k, v in (("ascore", parts[0]), ("lmscore", parts[1])))
            nbest.add(utt, am, " ".join(parts[3:]), n, lm)
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


def rates_table(metrics: dict, columns: list[tuple[str, str]]) -> list[str]:
    """The lines of a terminal table of error rates: a column per (title, key) of
    ``columns``, a row per part (dev, test) that has them, each rate in percent."""
    lines = [f"{'':<16}" + "".join(f"{title:>12}" for title, _ in columns)]
    for part in ("dev", "test"):
        if f"{part}/{columns[0][1]}" in metrics:
            name = f"{part} ({metrics[f'{part}/utterances']})"
            rates = [metrics[f"{part}/{key}"] for _, key in columns]
            lines.append(f"{name:<16}" + "".join(f"{100 * v:>11.2f}%" for v in rates))
    return lines


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
        first_pass: (N,) the score the weighted features are added to (the recogniser's total,
            or its acoustic score when its LM score is a feature);
        features: (N, F) the recogniser's LM score when apart, the LMs' log-probabilities,
            then words, then oov.
        errors: (N,) errors against the reference (zeros without references).
        units: per hypothesis, what WER counts of it (its words, or characters).
    """

    starts: np.ndarray
    first_pass: np.ndarray
    features: np.ndarray
    errors: np.ndarray
    units: list[list[str]] = field(default_factory=list)
    first: np.ndarray | None = None  # index of each utterance's first-pass answer (U,)

    def first_choice(self) -> np.ndarray:
        """The first pass's answers: ``first``, else the best ``first_pass`` of each."""
        return (
            self.first if self.first is not None else self.choose(np.zeros(self.features.shape[1]))
        )

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


def scales(table: Table) -> np.ndarray:
    """Each feature's weight at which it moves a score as much as the first pass does within
    an utterance (the grids' and the line searches' unit)."""
    first = spread(table.first_pass, table.starts)
    return np.asarray(
        [first / spread(table.features[:, k], table.starts) for k in range(table.features.shape[1])]
    )


def grids(table: Table, n_lms: int) -> list[tuple[float, ...]]:
    """The search grid of each weight: the LMs' (non-negative), then the word bonus's and the
    OOV weight's (either sign), each ``STEPS`` times the scale at which the feature moves a
    score as much as the first pass does within an utterance."""
    out = []
    for k, scale in enumerate(scales(table)):
        magnitudes = [scale * m for m in STEPS]
        signed = k >= n_lms
        out.append((0.0, *magnitudes, *([-m for m in magnitudes] if signed else [])))
    return out


def tune(
    table: Table,
    grids: list[tuple[float, ...]],
    joint: tuple[int, int] = (0, 1),
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """The weights with the fewest errors on the dev part. First a joint search of the two
    weights ``joint`` over their grids, the others 0 (the first LM's weight and the word bonus
    only help together: an LM alone prefers short hypotheses); then coordinate descent from
    there: each weight in turn takes the value of its grid with the fewest errors, the others
    held, until a sweep over all of them changes nothing (at most ``MAX_SWEEPS``). A value
    replaces the current one only if it makes fewer errors, and values are tried smallest
    magnitude first. ``start``: the weights the search starts from (default 0: the first
    pass; 1 for the recogniser's own LM when its score comes apart). Returns the weights and
    each stage's result."""
    weights = np.zeros(len(grids)) if start is None else np.asarray(start, dtype=np.float64)
    best = table.errors_of(weights)
    trace = [{"stage": "start", "errors": best, "weights": weights.tolist()}]
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


# -- exact line searches (Och's MERT) ----------------------------------------------------------
def line_errors(table: Table, weights: np.ndarray, direction: np.ndarray):
    """The dev errors along ``weights + t * direction`` for every t, exactly: each utterance's
    hypotheses are lines in t (score = a + b t), its choice the upper envelope's line, and
    the errors change only where the envelope changes line (Och 2003). Returns (breakpoints
    (K,), errors (K + 1,)): errors[0] holds for t below breakpoints[0], errors[k] between
    breakpoints[k-1] and breakpoints[k], errors[K] above the last one."""
    a = table.scores(weights)
    b = table.features @ direction
    ends = np.append(table.starts, len(a))
    points: list[float] = []
    deltas: list[int] = []
    base = 0
    for u in range(len(table.starts)):
        lo, hi = ends[u], ends[u + 1]
        env = _envelope(a[lo:hi], b[lo:hi])
        errs = table.errors[lo:hi]
        base += int(errs[env[0][1]])
        for (x, i), (_, j) in zip(env[1:], env[:-1]):
            points.append(x)
            deltas.append(int(errs[i]) - int(errs[j]))
    order = np.argsort(points, kind="stable")
    xs = np.asarray(points, dtype=np.float64)[order]
    steps = np.asarray(deltas, dtype=np.int64)[order]
    return xs, base + np.concatenate([[0], np.cumsum(steps)])


def _envelope(a: np.ndarray, b: np.ndarray) -> list[tuple[float, int]]:
    """The upper envelope of the lines ``a[i] + b[i] t``: [(from t, line)], the first from
    -inf; of identical lines the one listed first (``Table.choose``'s tie rule)."""
    finite = [i for i in range(len(a)) if np.isfinite(a[i])]
    if not finite:  # a recogniser that gave every hypothesis -inf: the first listed
        return [(-math.inf, 0)]
    order = sorted(finite, key=lambda i: (b[i], a[i], -i))
    hull: list[tuple[float, int]] = []
    for i in order:
        if hull and b[hull[-1][1]] == b[i]:
            hull.pop()  # same slope: this one is higher, or as high and listed first
        while hull:
            x0, j = hull[-1]
            x = (a[j] - a[i]) / (b[i] - b[j])  # where line i overtakes line j
            if x <= x0:
                hull.pop()
                continue
            hull.append((x, i))
            break
        else:
            hull.append((-math.inf, i))
    return hull


def best_step(xs: np.ndarray, errors: np.ndarray, lo: float, hi: float, width: float):
    """(t, errors, tied) of the best open interval of a line search within [lo, hi]: the
    interval's midpoint (a point ``width`` inside a bound or the last breakpoint, for an
    interval without one); of intervals with equal errors the one nearest 0 (the weights stay
    put when moving gains nothing); ``tied``: how many separate intervals share the minimum."""
    inside = (xs > lo) & (xs < hi)
    cuts = np.concatenate([[lo], xs[inside], [hi]])
    errs = errors[
        np.concatenate([[np.searchsorted(xs, lo, side="right")], np.nonzero(inside)[0] + 1])
    ]
    best = int(errs.min())
    at = np.nonzero(errs == best)[0]
    tied = int(1 + np.count_nonzero(np.diff(at) > 1))
    mids = []
    for k in at:
        left, right = cuts[k], cuts[k + 1]
        if math.isinf(left) and math.isinf(right):
            mids.append(0.0)
        elif math.isinf(left):
            mids.append(right - width)
        elif math.isinf(right):
            mids.append(left + width)
        else:
            mids.append((left + right) / 2)
    t = min(mids, key=abs)
    return t, best, tied


def refine(
    table: Table,
    weights: np.ndarray,
    signed: list[bool],
    scales: np.ndarray,
    restarts: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, list[dict]]:
    """Powell-style descent with exact line searches (SRILM's ``nbest-optimize``, Och's MERT):
    from ``weights`` and from ``restarts`` random points (each weight uniform within three
    ``scales`` of 0, the LMs' non-negative), line searches along every axis and two random
    directions in turn, each moving to its best interval's midpoint if that makes fewer
    errors, until a round moves nothing. Weights of unsigned features stay >= 0. Returns the
    best point (the first found of equal ones: the grid's, when nothing beats it) and a
    trace: each start's result and how many separate optima tied at the end."""
    rng = np.random.default_rng(seed)
    dims = len(weights)
    signed_mask = np.asarray(signed)
    starts = [np.asarray(weights, dtype=np.float64)]
    for _ in range(restarts):
        w = rng.uniform(-3, 3, dims) * scales
        starts.append(np.where(signed_mask, w, np.abs(w)))
    trace, best_w, best_e, ties = [], None, None, 0
    for n, w in enumerate(starts):
        e = table.errors_of(w)
        for _ in range(MAX_SWEEPS * 2):
            moved = False
            axes = list(np.eye(dims)) + [rng.normal(size=dims) for _ in range(2)]
            for d in axes:
                d = d * scales
                lo, hi = _bounds(w, d, signed_mask)
                xs, errs = line_errors(table, w, d)
                t, found, tied = best_step(xs, errs, lo, hi, width=0.5)
                trial = w + t * d
                if found < e and table.errors_of(trial) == found:
                    w, e, moved = trial, found, True
            if not moved:
                break
        trace.append(
            {"stage": f"restart {n}" if n else "line searches", "errors": e, "weights": w.tolist()}
        )
        if best_e is None or e < best_e:
            best_w, best_e, ties = w, e, 1
        elif e == best_e and not np.allclose(w, best_w, rtol=1e-3, atol=1e-9 * scales.max()):
            ties += 1
    trace.append(
        {"stage": "best", "errors": best_e, "weights": best_w.tolist(), "tied_optima": ties}
    )
    return best_w, trace


def _bounds(w: np.ndarray, d: np.ndarray, signed: np.ndarray) -> tuple[float, float]:
    """The t for which ``w + t d`` keeps every unsigned weight >= 0, within 1e3 steps."""
    lo, hi = -1e3, 1e3
    for k in np.nonzero(~signed & (d != 0))[0]:
        edge = -w[k] / d[k]
        if d[k] > 0:
            lo = max(lo, edge)
        else:
            hi = min(hi, edge)
    return lo, hi
