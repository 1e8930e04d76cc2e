"""``mix RUN_A RUN_B [RUN_C ...] [data=...]``: linear interpolation of models,
``p(w_t) = Σ_i λ_i p_i(w_t)`` per token, the weights found by EM on the validation split and
then frozen for the test split (as Mikolov's RNNLM toolkit interpolates a network with a
Kneser-Ney n-gram). Any family mixes with any other: every scorer gives the log-probability of
the same targets (``docs/evaluation.md``). Writes a run directory (config.yaml, metrics.json,
mix.json with the weights) and logs to the configured loggers; ``compare`` shows it as a row."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from seqlm.errors import SeqlmError
from seqlm.metrics import summarize
from seqlm.rundir import finish, run_dir_of, write_config
from seqlm.schema import STAGE_OF, mixture_description, run_metrics
from seqlm.scorers import load_scorer, on_data
from seqlm.tracking import log_final, make_loggers


def em_weights(
    logprobs: np.ndarray, iterations: int = 1000, tolerance: float = 1e-10
) -> tuple[np.ndarray, int]:
    """EM for the weights of a linear mixture whose components give ``logprobs`` (M, N) to
    the N tokens: each step sets ``λ_i`` to the mean over tokens of component i's posterior
    ``λ_i p_i(t) / Σ_j λ_j p_j(t)``. Returns the weights and the steps taken; it stops when no
    weight moves by more than ``tolerance``. The validation log-likelihood never decreases."""
    m = len(logprobs)
    weights = np.full(m, 1.0 / m)
    for step in range(1, iterations + 1):
        joint = np.log(weights)[:, None] + logprobs  # (M, N)
        posterior = np.exp(joint - np.logaddexp.reduce(joint, axis=0))
        new = posterior.mean(1)
        moved = np.abs(new - weights).max()
        weights = new
        if moved < tolerance:
            return weights, step
    return weights, iterations


def mixture_logprobs(weights: np.ndarray, logprobs: np.ndarray) -> np.ndarray:
    """log Σ_i λ_i p_i(t) for every token t."""
    with np.errstate(divide="ignore"):  # a zero weight is a component left out
        return np.logaddexp.reduce(np.log(weights)[:, None] + logprobs, axis=0)


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Mix ``cfg.runs``; the run directory is Hydra's (the CLI) or ``run_dir``."""
    runs = list(cfg.runs)
    if len(runs) < 2:
        raise SeqlmError(f"mix: give two or more run directories to interpolate, got {len(runs)}")
    started = time.perf_counter()
    scorers = [load_scorer(r) for r in runs]
    pseudo = [r for r, s in zip(runs, scorers) if s.pseudo]
    if pseudo:
        raise SeqlmError(
            f"mix: {pseudo[0]} is a bidirectional cloze model; its pseudo-log-likelihoods are "
            "not probabilities of the text and cannot be interpolated"
        )
    data, first = on_data(scorers[0], cfg.get("data"))
    scorers = [first, *(s.for_data(data) for s in scorers[1:])]  # one vocabulary, or refused
    lps = {
        split: np.stack([s.token_logprobs(data.ids[split], data.eval_batch_size) for s in scorers])
        for split in ("valid", "test")
    }
    weights, steps = em_weights(lps["valid"], cfg.em.iterations, cfg.em.tolerance)
    evaluation: dict[str, Any] = {}
    for split, mixed in ((s, mixture_logprobs(weights, lps[s])) for s in ("valid", "test")):
        evaluation.update(summarize(float(-mixed.sum()), len(mixed), STAGE_OF[split]))
    evaluation.update(data.info())
    names = [Path(r).name for r in runs]
    description = mixture_description(names, weights.tolist(), steps)
    metrics = run_metrics(description, evaluation, {"time/total_s": time.perf_counter() - started})
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    write_config(run_dir, cfg)
    data.vocab.save(run_dir / "vocab.json")
    (run_dir / "mix.json").write_text(
        json.dumps(
            {
                "runs": [str(Path(r).resolve()) for r in runs],
                "weights": weights.tolist(),
                "em_steps": steps,
            },
            indent=2,
        )
        + "\n"
    )
    for name, w in zip(names, weights):
        print(f"weight {w:.4f}  {name}")
    log_final(make_loggers(cfg, run_dir), OmegaConf.to_container(cfg, resolve=True), metrics)
    return finish(run_dir, metrics)
