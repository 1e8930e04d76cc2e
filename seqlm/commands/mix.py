"""``mix RUN_A RUN_B [RUN_C ...] [data=...]``: linear interpolation of models,
``p(w_t) = Σ_i λ_i p_i(w_t)`` per token, the weights found by EM on the validation split and
then frozen for the test split (as Mikolov's RNNLM toolkit interpolates a network with a
Kneser-Ney n-gram). Any family mixes with any other: every scorer gives the log-probability of
the same targets (``docs/evaluation.md``). A component may also be an ``eval tokens_out=``
file, e.g. a network evaluated with a cache and dynamic evaluation: that is how the methods
stack. Writes a run directory (config.yaml, metrics.json,
mix.json with the weights) and logs to the configured loggers; ``compare`` shows it as a row."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from seqlm.data import prepared_data
from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import STAGE_OF, mixture_description, run_metrics
from seqlm.evaluation.summary import summarize
from seqlm.files import write_text
from seqlm.runs.rundir import finish, run_dir_of, write_config
from seqlm.runs.tracking import log_final, make_loggers
from seqlm.scorers import load_scorer, on_data
from seqlm.scorers.mixture import is_token_file, mixture_logprobs, token_file

SPLITS = ("valid", "test")  # EM on the first, the frozen weights scored on the second


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


def check_mixable(logprobs: np.ndarray, split: str, runs: list[str], data) -> None:
    """Refuse a token every component gives probability 0 (a NaN log-probability, or -inf
    from all): EM's weights would become NaN and the mixture's perplexity infinite, written
    as null without a word."""
    bad = np.isnan(logprobs).any(0) | np.isneginf(logprobs).all(0)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    word = data.vocab.itos[int(data.ids[split][i])] if split in data.ids else "?"
    raise SeqlmError(
        f"mix: token {i} of the {split} split ({word!r}) has probability 0 or NaN under every "
        f"component ({', '.join(runs)}); no weights can give it a probability "
        f"({int(bad.sum())} such tokens)"
    )


def component_logprobs(path: str, data, scorer=None, device=None) -> dict[str, np.ndarray]:
    """Valid and test log-probabilities of one component: a run (scored here) or a
    ``tokens_out`` file (an adapted evaluation, an outside model), checked to hold the very
    targets of ``data``; a network scored on ``device``."""
    tokens = token_file(path)
    if tokens is None:
        scorer = scorer or load_scorer(path, device=device)
        scorer = scorer.for_data(data)  # one vocabulary, or refused
        return {s: scorer.text_logprobs(data.ids[s], data.eval_batch_size) for s in SPLITS}
    if bool(tokens["pseudo"]):
        raise SeqlmError(f"mix: {path} holds pseudo-log-likelihoods; they cannot be interpolated")
    for split in SPLITS:
        if split not in tokens or not np.array_equal(tokens[f"{split}_ids"], data.ids[split]):
            raise SeqlmError(
                f"mix: {path} was not scored on the {split} targets of data={data.name} "
                f"(vocabulary {data.vocab.digest()}); export both splits of the same data"
            )
    return {s: tokens[s] for s in SPLITS}


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Mix ``cfg.runs`` (run directories, or ``eval tokens_out=`` files); the run directory is
    Hydra's (the CLI) or ``run_dir``."""
    runs = list(cfg.runs)
    if len(runs) < 2:
        raise SeqlmError(f"mix: give two or more run directories to interpolate, got {len(runs)}")
    started = time.perf_counter()
    device = cfg.get("device")
    anchor = next((r for r in runs if not is_token_file(r)), None)
    if anchor is None and cfg.get("data") is None:
        raise SeqlmError("mix: with only tokens_out files, give data=NAME (their targets)")
    if anchor is None:
        data, loaded = prepared_data(cfg.data), None
    else:
        data, loaded = on_data(load_scorer(anchor, device=device), cfg.get("data"))
    parts = [component_logprobs(r, data, loaded if r == anchor else None, device) for r in runs]
    lps = {split: np.stack([p[split] for p in parts]) for split in SPLITS}
    for split in SPLITS:
        check_mixable(lps[split], split, runs, data)
    weights, steps = em_weights(lps["valid"], cfg.em.iterations, cfg.em.tolerance)
    evaluation: dict[str, Any] = {}
    for split in SPLITS:
        mixed = mixture_logprobs(weights, lps[split])
        evaluation.update(summarize(float(-mixed.sum()), len(mixed), STAGE_OF[split]))
    evaluation.update(data.info())
    names = [Path(r).name for r in runs]
    description = mixture_description(names, weights.tolist(), steps)
    metrics = run_metrics(description, evaluation, {"time/total_s": time.perf_counter() - started})
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    write_config(run_dir, cfg)
    data.vocab.save(run_dir / "vocab.json")  # the data was built before the run dir existed
    record = {"runs": [str(Path(r).resolve()) for r in runs], "weights": weights.tolist()}
    write_text(run_dir / "mix.json", json.dumps({**record, "em_steps": steps}, indent=2) + "\n")
    for name, w in zip(names, weights):
        print(f"weight {w:.4f}  {name}")
    log_final(make_loggers(cfg, run_dir), OmegaConf.to_container(cfg, resolve=True), metrics)
    return finish(run_dir, metrics)
