"""Checkpoints: ``best.ckpt`` by validation loss, ``last.ckpt`` for a resume, both written so
that a kill during a save never leaves a broken file in their place."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from seqlm.errors import SeqlmError
from seqlm.files import written


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` already writes through an fsspec transaction (a
    temporary file, then a move). This adds what a kill, a power cut or a full disk needs
    (``seqlm.files.written``): the temporary file sits in the checkpoint's own folder (so the
    rename is atomic on any file system) and is synced before the rename, so the old
    checkpoint stays whole until the new one is on disk; a failed write is one line that
    names the checkpoint."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with written(path) as tmp, tmp.open("wb") as f:  # a SIGKILL leaves a dot-file, harmless
            try:
                torch.save(checkpoint, f)
            except RuntimeError:
                # torch's zip writer reports a failed write as "unexpected pos": when the file
                # system is full, say that (as an OSError, which ``written`` names the file of)
                free = os.statvfs(tmp.parent)
                if free.f_bavail * free.f_frsize < (1 << 20):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
                raise


def checkpoint_callbacks(cfg: DictConfig, run_dir: Path) -> list[Callback]:
    """``best.ckpt`` by ``checkpoint.monitor``; ``last.ckpt`` after every validation and, with
    ``checkpoint.every_n_steps``, every N optimizer steps (what a resume starts from); with
    ``checkpoint.at_minutes``, snapshots after so many minutes of training."""
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=cfg.checkpoint.monitor,
        mode="min",
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    every = cfg.checkpoint.get("every_n_steps") or 0
    if not isinstance(every, int) or every < 0:
        raise SeqlmError(f"checkpoint.every_n_steps={every!r} must be 0 (off) or positive")
    timed = list(cfg.checkpoint.get("at_minutes") or [])
    extra = [TimedCheckpoints(run_dir / "checkpoints", timed)] if timed else []
    if not every:
        return [best, *extra]
    steps = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        every_n_train_steps=every,
        save_top_k=0,
        save_last=True,
        enable_version_counter=False,
    )
    return [best, steps, *extra]


class TimedCheckpoints(Callback):
    """``checkpoints/at-{M}min.ckpt`` once ``M`` minutes of training have passed, for each M of
    ``checkpoint.at_minutes`` (the clock starts with the first training step, as the
    Trainer's ``max_time`` does; a resumed run's clock starts again); a mark that training ends
    before reaching is written at the end if the run stops within a minute of it (``max_time``
    equal to the last mark). Under DDP rank 0's clock decides, checked every ``EVERY`` steps
    (saving is a collective: every rank must take part)."""

    EVERY = 10

    def __init__(self, dirpath: Path, minutes: list[float]):
        bad = [m for m in minutes if isinstance(m, bool) or not isinstance(m, int | float)]
        if bad or any(m <= 0 for m in minutes):
            raise SeqlmError(f"checkpoint.at_minutes={list(minutes)} must be positive numbers")
        self.dirpath, self.marks = Path(dirpath), sorted(minutes)
        self.started: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.monotonic()

    def _save_due(self, trainer: pl.Trainer, slack_s: float = 0.0) -> None:
        elapsed = trainer.strategy.broadcast(time.monotonic() - self.started + slack_s, src=0)
        while self.marks and elapsed >= 60 * self.marks[0]:
            mark = self.marks.pop(0)
            trainer.save_checkpoint(self.dirpath / f"at-{mark:g}min.ckpt", weights_only=False)

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if self.marks and trainer.global_step % self.EVERY == 0:
            self._save_due(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_due(trainer, slack_s=60.0)


def best_or_last(best: ModelCheckpoint) -> str | None:
    """The checkpoint the final validation and test use: the best by validation, else (no
    validation ran: ``limit_val_batches=0``, a short ``max_steps``) the last one written, else
    ``None`` (the weights as they are)."""
    if best.best_model_path:
        return best.best_model_path
    last = Path(best.dirpath) / "last.ckpt"
    return str(last) if last.is_file() else None


def init_weights(lit: pl.LightningModule, path: str, vocab: list[str]) -> None:
    """Start ``lit`` from the weights of the checkpoint at ``path`` (``init_from=``: AWD-LSTM's
    finetune stage starts from the best checkpoint with a new optimizer). The checkpoint's
    vocabulary and every weight's name and shape must match."""
    if not Path(path).is_file():
        raise SeqlmError(f"init_from={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        weights = ckpt["state_dict"]
    except Exception as e:
        raise SeqlmError(f"init_from={path}: not a seqlm checkpoint ({e})") from e
    if ckpt.get("seqlm", {}).get("vocab", vocab) != vocab:
        raise SeqlmError(f"init_from={path}: the checkpoint's vocabulary is not this data's")
    try:
        lit.load_state_dict(weights)
    except RuntimeError as e:
        why = str(e).splitlines()[0]
        raise SeqlmError(f"init_from={path}: its weights do not fit model= ({why})") from e
