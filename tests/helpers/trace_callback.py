"""A Lightning callback for tests that run the CLI in a subprocess: one JSON line per trained
window (rank, epoch, window, optimizer step, a checksum of the first parameter's Adam moment,
the batch's first column of targets, a digest of torch's RNG state: the dropout masks to
come). With ``hold=PATH`` it waits before each window from optimizer step ``hold_at`` on while
that file exists, so a test can act on a run that is certain to be still training."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytorch_lightning as pl
import torch


class Trace(pl.Callback):
    def __init__(self, path: str, sleep_s: float = 0.0, hold: str | None = None, hold_at: int = 0):
        self.path, self.sleep_s, self.hold, self.hold_at = path, sleep_s, hold, hold_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        opt = trainer.optimizers[0]
        first = next(iter(pl_module.parameters()))
        state = opt.state.get(first, {})
        row = {
            "rank": trainer.global_rank,
            "epoch": trainer.current_epoch,
            "window": trainer.datamodule.stream.trained - 1,
            "global_step": trainer.global_step,
            "adam_step": float(state["step"]) if "step" in state else 0.0,
            "exp_avg_sum": float(state["exp_avg"].double().sum()) if "exp_avg" in state else 0.0,
            "first_targets": batch["target"][:, 0].tolist(),  # what this rank really trained on
            "rng": hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16],
        }
        with open(f"{self.path}.{trainer.global_rank}", "a") as f:
            f.write(json.dumps(row) + "\n")
        time.sleep(self.sleep_s)
        while self.hold and trainer.global_step >= self.hold_at and os.path.exists(self.hold):
            time.sleep(0.01)
