"""``train``: fit a model, test it with its best weights, write the run directory
(``seqlm.runs.rundir``). A network trains through Lightning (``seqlm.training.run``); an n-gram
model (``model=kn3``) is counted once on the same data and scored on the same targets, without
importing torch or Lightning."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seqlm.build import build
from seqlm.data import prepared_data
from seqlm.errors import SeqlmError
from seqlm.evaluation.schema import run_metrics
from seqlm.runs.lock import RunLock
from seqlm.runs.rundir import finish, run_dir_of, write_config
from seqlm.runs.tracking import log_final, make_loggers
from seqlm.scorers import family_of
from seqlm.scorers.ngram import fit_ngram
from seqlm.training.launch import global_rank


def train(
    cfg: DictConfig,
    run_dir: Path | None = None,
    callbacks: list | None = None,
    evaluate: bool = True,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; returns the metrics also written to metrics.json.
    ``callbacks`` are added to the trainer's; ``evaluate=False`` skips the final validation
    and test (benchmarks of the training loop); ``ckpt_path`` (a file or ``last``) resumes.
    Under DDP only rank 0 writes the run directory and the loggers' runs."""
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    zero = global_rank() == 0
    if zero:
        write_config(run_dir, cfg)
    if family_of(cfg.model) == "ngram":
        return train_ngram(cfg, run_dir) if zero else {}  # counting is one process's work
    from seqlm.training.run import train_network

    return train_network(cfg, run_dir, callbacks, evaluate, ckpt_path)


def train_ngram(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Count on the train split, evaluate val and test, write model.npz (+ model.arpa unless
    ``model.write_arpa=false``: the npz is the exact format, the ARPA file an export)."""
    started = time.perf_counter()
    data = prepared_data(cfg.data, "stream", run_dir, loaders=False)
    container = OmegaConf.to_container(cfg, resolve=True)
    fit_options = {k: v for k, v in container["model"].items() if k != "write_arpa"}
    scorer = fit_ngram(build("model", fit_options, _convert_="all"), data, container)
    train_s = time.perf_counter() - started
    evaluation = scorer.evaluate(data)
    facts = {
        "time/train_s": train_s,
        "count/tokens_per_s": len(data.ids["train"]) / train_s,  # counting and smoothing
        "checkpoint": str(scorer.save(run_dir, arpa=cfg.model.get("write_arpa", True))),
        "time/total_s": time.perf_counter() - started,
    }
    metrics = run_metrics(scorer.describe(), evaluation, facts)
    log_final(make_loggers(cfg, run_dir), container, metrics)
    return finish(run_dir, metrics)


def run(cfg: DictConfig) -> dict[str, Any]:
    # one training per run directory, checked first: the process of global rank 0 holds the
    # lock (the DDP workers Lightning, torchrun or srun start run this command too)
    owner = global_rank() == 0 and os.environ.get("NODE_RANK", "0") == "0"
    folder = Path(cfg.resume).expanduser() if cfg.get("resume") else run_dir_of(cfg)
    with RunLock(folder) if owner else contextlib.nullcontext():
        if cfg.get("resume"):
            from seqlm.training.resume import last_checkpoint, resumed_config

            cfg, run_dir = resumed_config(cfg)
            return train(cfg, run_dir, ckpt_path=last_checkpoint(run_dir))
        ckpt_path = cfg.get("ckpt_path")
        if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
            raise SeqlmError(f"ckpt_path={ckpt_path}: no such checkpoint file (or use `last`)")
        return train(cfg, ckpt_path=ckpt_path)
