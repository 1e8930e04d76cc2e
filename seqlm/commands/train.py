"""``train``: fit a model, test it with its best weights, write the run directory
(``seqlm.rundir``). A network trains through Lightning; an n-gram model (``model=kn3``) is
counted once on the same data and scored on the same targets."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar, TQDMProgressBar
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from seqlm.build import build
from seqlm.checkpointing import (
    AtomicCheckpointIO,
    best_or_last,
    checkpoint_callbacks,
    init_weights,
)
from seqlm.data import prepared_data
from seqlm.errors import Diverged, SeqlmError
from seqlm.launch import check_launch
from seqlm.lit import LitLM
from seqlm.models import layout_of
from seqlm.quiet import silence_known_notices
from seqlm.resume import last_checkpoint, resumed_config
from seqlm.rundir import History, finish, run_dir_of, write_config, write_metrics
from seqlm.schema import network_description, run_metrics
from seqlm.scorers import family_of
from seqlm.scorers.ngram import fit_ngram
from seqlm.tracking import log_final, make_loggers

PROGRESS_EVERY = 10  # training steps per redraw of the progress bar


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
    silence_known_notices()
    run_dir = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    zero = rank_zero_only.rank == 0
    if zero:
        write_config(run_dir, cfg)
    if family_of(cfg.model) == "ngram":
        return train_ngram(cfg, run_dir) if zero else {}  # counting is one process's work
    check_launch(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    started = time.perf_counter()
    container = OmegaConf.to_container(cfg, resolve=True)
    data = prepared_data(cfg.data, layout_of(cfg.model), run_dir if zero else None)
    lit = LitLM(container["model"], container["optim"], data.vocab.itos, container)
    if cfg.get("init_from"):
        init_weights(lit, cfg.init_from, data.vocab.itos)
    trainer, best, loggers = make_trainer(cfg, run_dir, callbacks)
    try:
        trainer.fit(lit, datamodule=data, ckpt_path=ckpt_path)
    except Diverged as e:  # the checkpoints written so far are finite and stay
        if trainer.is_global_zero:
            write_metrics(run_dir / "metrics.json", e.metrics())
            log_final(loggers, container, e.metrics(), failed=True)
        raise
    train_s = time.perf_counter() - started
    if not evaluate:
        return {"time/train_s": train_s, "train/steps": trainer.global_step}

    ckpt = best_or_last(best)  # the best weights by validation, else the last saved
    for stage in (trainer.validate, trainer.test):
        stage(lit, datamodule=data, ckpt_path=ckpt, verbose=False, weights_only=True)
    evaluation = {**lit.results.get("val", {}), **lit.results["test"], **data.info()}
    params = sum(p.numel() for p in lit.net.parameters())
    facts = {
        "time/train_s": train_s,
        "time/total_s": time.perf_counter() - started,
        "train/steps": trainer.global_step,
        "train/epochs": trainer.current_epoch,
        "train/world_size": trainer.world_size,
        # every rank trains as many targets; the time includes validation
        "train/tokens_per_s": lit.tokens_seen * trainer.world_size / train_s,
        "checkpoint": ckpt or "",
        **peak_memory(),
    }
    metrics = run_metrics(network_description(container["model"], params), evaluation, facts)
    if trainer.is_global_zero:
        log_final(loggers, container, metrics)
    return finish(run_dir, metrics, write=trainer.is_global_zero)


def train_ngram(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Count on the train split, evaluate val and test, write model.npz (+ model.arpa unless
    ``model.write_arpa=false``: the npz is the exact format, the ARPA file an export)."""
    started = time.perf_counter()
    data = prepared_data(cfg.data, "stream", run_dir)
    container = _container(cfg)
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


def _container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def make_trainer(cfg: DictConfig, run_dir: Path, extra: list | None):
    """(trainer, the best-checkpoint callback, loggers) for ``cfg.trainer``."""
    ckpts = checkpoint_callbacks(cfg, run_dir)
    loggers = make_loggers(cfg, run_dir)
    user = [build(f"callbacks.{k}", c) for k, c in (cfg.get("callbacks") or {}).items()]
    monitor = [LearningRateMonitor(logging_interval="step")] if loggers else []  # train/lr
    callbacks = [*ckpts, History(run_dir / "history.jsonl"), *monitor, *user, *(extra or [])]
    if cfg.trainer.get("enable_progress_bar", True) and not any(
        isinstance(c, ProgressBar) for c in callbacks
    ):
        # Lightning's bar redraws every step; on a small model that is ~1% of the step, and
        # W&B's console capture copies every redraw. Ten steps a redraw is still live.
        callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_EVERY))
    trainer: pl.Trainer = build(
        "trainer",
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        # A new loader every epoch is how the stream learns its epoch (set_epoch): AWD window
        # lengths and sentence order are drawn per epoch, and the resume position names it.
        reload_dataloaders_every_n_epochs=1,
    )
    return trainer, ckpts[0], loggers


def peak_memory() -> dict[str, int]:
    """Peak resident memory of this process (and peak GPU memory allocated), in bytes."""
    out = {"memory/peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        out["memory/peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    return out


def run(cfg: DictConfig) -> dict[str, Any]:
    if cfg.get("resume"):
        cfg, run_dir = resumed_config(cfg)
        return train(cfg, run_dir, ckpt_path=last_checkpoint(run_dir))
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise SeqlmError(f"ckpt_path={ckpt_path}: no such checkpoint file (or use `last`)")
    return train(cfg, ckpt_path=ckpt_path)
