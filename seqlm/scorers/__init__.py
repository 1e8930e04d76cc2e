"""One interface for every model a command can load: a network's checkpoint, an n-gram run,
a foreign ARPA file. The commands see models only through ``Scorer``; ``load_scorer`` is the
one place that decides which family a file holds, and ``family_of`` the one place that decides
it for a config (from its ``_target_``). Each kind of model offers what it can; what it cannot
do is refused by ``Scorer.refuse``, with one message per kind.

What every log-probability means is written down in ``docs/evaluation.md``: natural logs,
every token of a line and its ``<eos>`` predicted, contexts starting at an ``<eos>`` (``<s>``)
boundary; a bidirectional model gives pseudo-log-likelihoods (``pseudo`` is true).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from seqlm.data.tokenize import tokenizer_of
from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError

if TYPE_CHECKING:
    from seqlm.data import LMData
    from seqlm.decoding.step import StepLM

BLANK_EXCLUDED = (Vocab.unk_id, Vocab.eos_id)  # never proposed for a blank
NEXT_WORD = "next-word distribution (generate, decoders)"
ADAPTATION = "weights a neural cache or dynamic evaluation could adapt (cache.*, dynamic.*)"


class Scorer(ABC):
    """A trained language model seen through seqlm's vocabulary.

    Attributes:
        vocab: the vocabulary its ids refer to.
        config: the resolved config of the run that made it (``{}`` for a foreign file).
        path: the file it was loaded from (``None`` while training).
        family: ``network`` or ``ngram``.
        pseudo: its log-probabilities are pseudo-log-likelihoods (the bidirectional model).
        layout: the ``LMData`` layout its evaluation reads.
        kind, instead: what the model is, and what to use it for, in a refusal.
    """

    family: str
    pseudo: bool = False
    layout: str = "stream"  # how its data is batched: ``stream`` or ``sentences``
    kind: str
    instead: str = ""

    def __init__(self, vocab: Vocab, config: dict, path: Path | None):
        self.vocab, self.config, self.path = vocab, config, path

    # -- text -----------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Words of ``text`` as the run's tokenizer cuts them."""
        return tokenizer_of(self.config)(text)

    def join(self, words: list[str]) -> str:
        """Tokens back to text: characters side by side for a character-level run (its ``▁``
        marks a space), words with spaces otherwise."""
        if self.config.get("data", {}).get("tokenizer") == "char":
            return "".join(words).replace("▁", " ")
        return " ".join(words)

    def encode_known(self, words: list[str], what: str) -> list[int]:
        """Ids of ``words``; refuses text whose every word is outside the vocabulary."""
        ids = self.vocab.encode(words)
        if words and all(i == Vocab.unk_id for i in ids) and "<unk>" not in words:
            raise SeqlmError(
                f"{what}: every word is outside the model's vocabulary "
                f"({len(self.vocab)} words), nothing to condition on"
            )
        return ids

    # -- probabilities --------------------------------------------------------------------------
    @abstractmethod
    def token_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        """log p of every token of the id stream ``ids`` (lines ending in ``<eos>``), in order,
        float64. A network reads the stream as ``rows`` contiguous rows, each from a zero state
        after an ``<eos>`` (evaluation's layout with ``rows = data.eval_batch_size``); an
        n-gram restarts at every line whatever ``rows`` is."""

    def sentence_logprobs(self, lines: list[list[int]]) -> np.ndarray:
        """log p of each line (its ``<eos>`` included), each from a fresh ``<eos>`` context;
        for the bidirectional model the pseudo-log-likelihood, the sum over the line of
        log p(w_t | every other word)."""
        return np.asarray([lp.sum() for lp in self.line_token_logprobs(lines)], dtype=np.float64)

    def line_token_logprobs(self, lines: list[list[int]]) -> list[np.ndarray]:
        """log p of every token of each line and its ``<eos>``, each line from a fresh
        ``<eos>`` context (what ``sentence_logprobs`` sums); this default reads the lines as
        one stream, right for a model that restarts at every line (an n-gram)."""
        ends = np.cumsum([len(ln) + 1 for ln in lines])
        ids = np.asarray([i for ln in lines for i in [*ln, Vocab.eos_id]], dtype=np.int64)
        return np.split(self.token_logprobs(ids), ends[:-1]) if lines else []

    @staticmethod
    def by_length(lines: list, batch_size: int, score) -> list[np.ndarray]:
        """``score(chunk)`` -> (B, W) log-probabilities of ``batch_size`` lines of about the
        same length at a time (little padding a batch), cut back to each line and its
        ``<eos>``, in the lines' order."""
        out: list = [None] * len(lines)
        order = np.argsort([len(ln) for ln in lines], kind="stable")
        for start in range(0, len(lines), batch_size):
            rows = order[start : start + batch_size]
            lp = score([lines[i] for i in rows])
            for r, i in enumerate(rows):
                out[i] = lp[r, : len(lines[i]) + 1]
        return out

    def text_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        """``token_logprobs`` where they are probabilities of the text, left to right, which a
        mixture may interpolate; refused for pseudo-log-likelihoods."""
        return self.token_logprobs(ids, rows)

    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        """log p(w | ``<eos>`` prefix) for every id w (left-to-right models)."""
        self.refuse(NEXT_WORD)

    def stepper(self) -> StepLM:
        """The step API (``seqlm.decoding.step``) over this model, what a decoder drives."""
        self.refuse(NEXT_WORD)

    def line_ngram_lengths(self, lines: list[list[int]]) -> list[np.ndarray]:
        """For every token of each line and its ``<eos>`` (as ``line_token_logprobs``), the
        length of the stored n-gram its probability came from (KenLM's ``ngram_length``)."""
        self.refuse("n-grams whose length a token's probability came from (score tokens=true)")

    def blank_logprobs(self, left: list[int], right: list[int]) -> np.ndarray:
        """log p(w | left, right) for every id w, ``<unk>`` and ``<eos>`` excluded: for a
        left-to-right model, p(left w right) normalised over the vocabulary."""
        cands = [[*left, w, *right] for w in range(len(self.vocab))]
        return normalise_blank(self.sentence_logprobs(cands))

    def gradient_norms(self, ids: np.ndarray, lags: int, windows: int) -> np.ndarray:
        """``g_k = ||dℓ_t / ds_{t-k}||`` for k = 0..lags in each of ``windows`` windows of
        ``ids`` (``seqlm.analysis.gradflow`` defines it); left-to-right networks only."""
        self.refuse("hidden state whose gradient could flow back through time (gradients)")

    def adapted_logprobs(self, ids: np.ndarray, rows: int, window: int, cache, dynamic):
        """``token_logprobs`` under a neural cache and/or dynamic evaluation
        (``seqlm.evaluation.test_time``); left-to-right networks only."""
        self.refuse(ADAPTATION)

    def tune_adaptation(self, ids, rows, window, cache, dynamic, search_cache, search_dynamic):
        """``evaluation.test_time.tune`` on this model: (cache, dynamic, every point tried)."""
        self.refuse(ADAPTATION)

    def refuse(self, what: str) -> NoReturn:
        """The one refusal of what this kind of model cannot do."""
        instead = f"; {self.instead}" if self.instead else ""
        raise SeqlmError(f"ckpt={str(self.path)!r} is {self.kind}: it has no {what}{instead}")

    @abstractmethod
    def evaluate(self, data: LMData, splits: tuple[str, ...] = ("valid", "test")) -> dict:
        """``{split}/loss, ppl (or pseudo_ppl), bits, tokens`` (and agreement on the built-in
        corpus) on ``data``, as training's final evaluation computes them, plus data facts."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The ``model/*`` and ``data/*`` metadata of the model (``seqlm.evaluation.schema``)."""

    def for_data(self, data: LMData) -> Scorer:
        """This scorer on ``data``; refused when the data builds another vocabulary."""
        if data.vocab != self.vocab:
            raise SeqlmError(
                f"ckpt={str(self.path)!r} was trained with vocabulary {self.vocab.digest()} "
                f"({len(self.vocab)} tokens), but data={data.name} builds "
                f"{data.vocab.digest()} ({len(data.vocab)} tokens): scores across "
                "vocabularies are not comparable"
            )
        return self


def normalise_blank(scores: np.ndarray) -> np.ndarray:
    """Scores of every word for a blank (V,) -> log-probabilities over the words a blank may
    hold (``<unk>`` and ``<eos>`` get -inf)."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    scores[list(BLANK_EXCLUDED)] = -np.inf
    top = scores.max()
    return scores - (top + np.log(np.exp(scores - top).sum()))


def on_data(scorer: Scorer, data_cfg: Any = None) -> tuple[LMData, Scorer]:
    """(data, scorer): the data of ``data_cfg``, else the run's own, laid out for the model;
    the scorer checked against (or, for a foreign ARPA file, matched to) its vocabulary."""
    from seqlm.data import prepared_data

    if data_cfg is None and "data" not in scorer.config:
        raise SeqlmError(f"ckpt={str(scorer.path)!r} carries no data config; give data=NAME")
    node = data_cfg if data_cfg is not None else scorer.config["data"]
    data = prepared_data(node, scorer.layout, loaders=scorer.family != "ngram")
    return data, scorer.for_data(data)


def family_of(model_cfg: Any) -> str:
    """The family a training config's ``model`` builds: its ``_target_``'s package."""
    return "ngram" if str(model_cfg.get("_target_", "")).startswith("ngram.") else "network"


def load_scorer(path: str | Path, arpa_unk: str | None = None, device: str | None = None) -> Scorer:
    """A trained model from a run directory (a network's, an n-gram's or a ``mix`` run's),
    a network checkpoint (``.ckpt``), an n-gram ``model.npz``, an ARPA file (``.arpa``,
    ``.arpa.gz``; ``arpa_unk`` is its word for the data's ``<unk>``) or a ``seqlm export``
    folder (or its ``.onnx`` file). A network runs on
    ``device`` (``cuda``, ``cuda:1``, ``cpu``; default a GPU when there is one); an n-gram
    on the CPU (numpy)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SeqlmError(f"ckpt={str(path)!r}: no such file or run directory")
    if arpa_unk is not None and ".arpa" not in p.name:
        raise SeqlmError(f"arpa_unk={arpa_unk!r} is for ARPA files; {p} is not one")
    if p.is_dir() and (p / "mix.json").exists():
        from seqlm.scorers.mixture import load_mixture

        return load_mixture(p, device)
    if (p.is_dir() and (p / "model.npz").exists()) or p.suffix == ".npz" or ".arpa" in p.name:
        from seqlm.scorers.ngram import load_ngram

        return load_ngram(p, arpa_unk)
    if p.suffix == ".onnx" or (p.is_dir() and (p / "with-state.onnx").exists()):
        from seqlm.scorers.onnx import load_onnx

        return load_onnx(p)  # a seqlm export, through onnxruntime (CPU)
    from seqlm.scorers.network import load_network

    return load_network(p, device)


__all__ = ["Scorer", "family_of", "load_scorer", "normalise_blank", "on_data"]
