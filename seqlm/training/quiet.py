"""The notices a user cannot act on, silenced one by one where they are emitted, each with
the reason it does not apply. Nothing else is muted: every other warning still shows."""

from __future__ import annotations

import logging
import warnings


class _DropTip(logging.Filter):
    """Lightning advertises its cloud logger on every Trainer that has no LitLogger; seqlm's
    loggers are chosen with ``logger=``, so the tip says nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud logging")


def silence_known_notices() -> None:
    # Lightning's own pytree helper builds a torch LeafSpec, which torch 2.9+ marks
    # deprecated; it is Lightning's call to change, not the user's.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )
    # seqlm's stream datasets are iterated by the main process only (no workers), so their
    # __len__ is exact: the caveat about multi-process loading does not apply.
    warnings.filterwarnings(
        "ignore",
        message=r"Your `IterableDataset` has `__len__` defined",
        module=r"pytorch_lightning\.utilities\.data",
    )
    # With no validation yet (a run shorter than an epoch, limit_val_batches=0) there is no
    # val/loss to pick a best checkpoint by; seqlm then tests last.ckpt and says so itself.
    warnings.filterwarnings(
        "ignore", message=r"`ModelCheckpoint\(monitor='val/loss'\)` could not find the monitored"
    )
    # The plateau scheduler waits for a val/loss; seqlm says at the start that it will wait.
    warnings.filterwarnings(
        "ignore", message=r"ReduceLROnPlateau conditioned on metric val/loss which is not available"
    )
    # Under DDP every epoch-level figure seqlm logs is already every rank's: val/* and test/*
    # are made from sums that torchmetrics all-reduced (docs/usage.md, "Several GPUs"), and
    # time/epoch_s is a wall time, which no reduction makes truer. sync_dist would only add a
    # collective per key.
    warnings.filterwarnings(
        "ignore",
        message=r"It is recommended to use `self\.log\('(val|test|time)/.*sync_dist=True",
        module=r"pytorch_lightning\.trainer\.connectors\.logger_connector\.result",
    )
    # Lightning's own all_gather (LightningModule.all_gather, which the exact resume uses to
    # collect every rank's carried state) calls a torch function torch now marks deprecated.
    warnings.filterwarnings(
        "ignore",
        message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
        module=r"lightning_fabric\.utilities\.distributed",
    )
    # A resumed run continues in its own directory, whose checkpoints are the point.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropTip) for f in logger.filters):
        logger.addFilter(_DropTip())
