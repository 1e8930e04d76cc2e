"""Checkpoints: ``best.ckpt`` by validation loss, ``last.ckpt`` for a resume, both written so
that a kill during a save never leaves a broken file in their place."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from seqlm.errors import SeqlmError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` already writes through an fsspec transaction (a
    temporary file, then a move). This adds what a kill or a power cut needs: the temporary
    file sits in the checkpoint's own folder (so the rename is atomic on any file system) and
    is ``fsync``-ed before the rename, so the old checkpoint stays whole until the new one is
    on disk."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)  # after an error; a SIGKILL leaves it, harmless


def checkpoint_callbacks(cfg: DictConfig, run_dir: Path) -> list[ModelCheckpoint]:
    """``best.ckpt`` by ``checkpoint.monitor``; ``last.ckpt`` after every validation and, with
    ``checkpoint.every_n_steps``, every N optimizer steps (what a resume starts from)."""
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
    if not every:
        return [best]
    steps = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        every_n_train_steps=every,
        save_top_k=0,
        save_last=True,
        enable_version_counter=False,
    )
    return [best, steps]


def best_or_last(best: ModelCheckpoint) -> str | None:
    """The checkpoint the final validation and test use: the best by validation, else (no
    validation ran: ``limit_val_batches=0``, a short ``max_steps``) the last one written, else
    ``None`` (the weights as they are)."""
    if best.best_model_path:
        return best.best_model_path
    last = Path(best.dirpath) / "last.ckpt"
    return str(last) if last.is_file() else None
