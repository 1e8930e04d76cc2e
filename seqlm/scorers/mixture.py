"""A ``mix`` run as a ``Scorer``: its components loaded again and interpolated per token with
the run's frozen weights, ``p(w_t) = Σ_i λ_i p_i(w_t)``, so that a mixture rescores, generates
and evaluates like any model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import STAGE_OF, mixture_description
from seqlm.evaluation.summary import summarize
from seqlm.scorers import Scorer, load_scorer


def mixture_logprobs(weights: np.ndarray, logprobs) -> np.ndarray:
    """log Σ_i λ_i p_i(t) for every token t; ``logprobs`` (M, N), one row per component (an
    array or M arrays of N)."""
    logprobs = np.asarray(logprobs)
    with np.errstate(divide="ignore"):  # a zero weight is a component left out
        return np.logaddexp.reduce(np.log(weights)[:, None] + logprobs, axis=0)


def is_token_file(path: str) -> bool:
    """Whether ``path`` is an ``eval tokens_out=`` file (an n-gram ``model.npz`` is a run like
    any other); only the member names are read."""
    p = Path(path).expanduser()
    if p.suffix != ".npz" or not p.is_file():
        return False
    with np.load(p) as z:
        return "vocab_hash" in z.files


def token_file(path: str) -> dict[str, np.ndarray] | None:
    """The arrays of an ``eval tokens_out=`` file, or ``None`` if ``path`` is not one."""
    if not is_token_file(path):
        return None
    with np.load(Path(path).expanduser()) as z:
        return {k: z[k] for k in z.files}


class MixtureScorer(Scorer):
    """Components on one vocabulary, interpolated per token with fixed ``weights``."""

    family = "mixture"
    kind = "a mixture of models"

    def __init__(
        self, parts: list[Scorer], weights: list[float], config: dict, path: Path, em_steps: int
    ):
        super().__init__(parts[0].vocab, config, path)
        self.em_steps = em_steps
        for part in parts:
            if part.pseudo:
                part.refuse("probabilities of the text to interpolate (mix)")
            if part.vocab != self.vocab:
                raise SeqlmError(
                    f"ckpt={str(path)!r}: its components do not share one vocabulary "
                    f"({part.path} has {part.vocab.digest()}, {parts[0].path} "
                    f"{self.vocab.digest()})"
                )
        self.parts, self.weights = parts, np.asarray(weights, dtype=np.float64)

    def token_logprobs(self, ids: np.ndarray, rows: int = 1) -> np.ndarray:
        return mixture_logprobs(self.weights, [p.token_logprobs(ids, rows) for p in self.parts])

    def line_token_logprobs(self, lines: list[list[int]]) -> list[np.ndarray]:
        parts = [p.line_token_logprobs(lines) for p in self.parts]
        return [mixture_logprobs(self.weights, lps) for lps in zip(*parts)]

    def next_logprobs(self, prefix: list[int]) -> np.ndarray:
        return mixture_logprobs(self.weights, [p.next_logprobs(prefix) for p in self.parts])

    def stepper(self):
        from seqlm.decoding.step import MixtureStepLM  # torch, only for a decoder

        return MixtureStepLM(self, [p.stepper() for p in self.parts], self.weights)

    def evaluate(self, data, splits=("valid", "test")) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for split in splits:
            lp = self.token_logprobs(data.ids[split], data.eval_batch_size)
            out.update(summarize(float(-lp.sum()), len(lp), STAGE_OF[split]))
        return {**out, **data.info()}

    def describe(self) -> dict[str, Any]:
        names = [Path(str(p.path)).name for p in self.parts]
        return mixture_description(names, self.weights.tolist(), self.em_steps)


def load_mixture(run_dir: Path, device: str | None = None) -> MixtureScorer:
    """The mixture of a ``mix`` run directory (its ``mix.json``: component runs and weights)."""
    record = json.loads((run_dir / "mix.json").read_text())
    parts = []
    for run in record["runs"]:
        if is_token_file(run):
            raise SeqlmError(
                f"ckpt={str(run_dir)!r}: component {run} is an `eval tokens_out=` file "
                "(scores of fixed targets), which cannot score new text"
            )
        parts.append(load_scorer(run, device=device))
    config = parts[0].config
    return MixtureScorer(parts, record["weights"], config, run_dir, record.get("em_steps", 0))
