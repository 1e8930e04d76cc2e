"""The Trainer of a network's run: its callbacks, loggers and checkpoint I/O."""

from __future__ import annotations

import resource
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    TQDMProgressBar,
)

from seqlm.build import build
from seqlm.errors import SeqlmError
from seqlm.runs.tracking import make_loggers
from seqlm.training.averaging import NTASGD
from seqlm.training.checkpointing import AtomicCheckpointIO, checkpoint_callbacks
from seqlm.training.history import History
from seqlm.training.interrupt import RankWatch
from seqlm.training.resume import ExactResume

PROGRESS_EVERY = 10  # training steps per redraw of the progress bar


def make_trainer(
    cfg: DictConfig, run_dir: Path, extra: list | None
) -> tuple[pl.Trainer, ModelCheckpoint, list]:
    """(trainer, the best-checkpoint callback, loggers) for ``cfg.trainer``, with ``extra``
    callbacks added."""
    ckpts = checkpoint_callbacks(cfg, run_dir)
    loggers = make_loggers(cfg, run_dir)
    nonmono = cfg.optim.get("nonmono")  # NT-ASGD, when set; before any snapshot of a step
    averaging = [] if nonmono is None else [NTASGD(nonmono, cfg.optim.get("average_from_start"))]
    user = [build(f"callbacks.{k}", c) for k, c in (cfg.get("callbacks") or {}).items()]
    monitor = [LearningRateMonitor(logging_interval="step")] if loggers else []  # train/lr
    callbacks = [
        ExactResume(cfg.seed),
        *averaging,
        *ckpts,
        History(run_dir / "history.jsonl"),
        RankWatch(run_dir),
        *monitor,
        *user,
        *(extra or []),
    ]
    if cfg.trainer.get("enable_progress_bar", True) and not any(
        isinstance(c, ProgressBar) for c in callbacks
    ):
        # Lightning's bar redraws every step; on a small model that is ~1% of the step, and
        # W&B's console capture copies every redraw. Ten steps a redraw is still live.
        callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_EVERY))
    options = OmegaConf.to_container(cfg.trainer, resolve=True)
    set_matmul_precision(options.pop("matmul_precision", "high"))
    trainer: pl.Trainer = build(
        "trainer",
        options,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        # A new loader every epoch is how the stream learns its epoch (set_epoch): AWD window
        # lengths and sentence order are drawn per epoch, and the resume position names it.
        reload_dataloaders_every_n_epochs=1,
    )
    return trainer, ckpts[0], loggers


MATMUL_PRECISIONS = ("highest", "high", "medium")


def set_matmul_precision(precision: str) -> None:
    """``trainer.matmul_precision``: how a GPU multiplies float32 matrices
    (``torch.set_float32_matmul_precision``; ``high``: TF32 on tensor cores, ``highest``: full
    float32). CPUs are left at ``highest``, so that CPU figures never depend on the setting."""
    if precision not in MATMUL_PRECISIONS:
        raise SeqlmError(
            f"trainer.matmul_precision={precision!r} is not one of {', '.join(MATMUL_PRECISIONS)}"
        )
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision(precision)


def peak_memory() -> dict[str, int]:
    """Peak resident memory of this process (and peak GPU memory allocated), in bytes."""
    out = {"memory/peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        out["memory/peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    return out
