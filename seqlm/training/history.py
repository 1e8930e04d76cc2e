"""``history.jsonl`` of a run directory (``seqlm.rundir``), written while training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl

from seqlm.schema import finite


class History(pl.Callback):
    """``history.jsonl``: one line per validation, with the epoch, step, wall time since the
    start of training and the validation metrics; ``compare`` plots it. Rank 0 writes; a resumed
    run appends, its clock continuing from the last line."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0.0
        self.started = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()
        if self.path.exists():  # the clock of the last validation line (other lines have none)
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            self.offset = next((r["time_s"] for r in reversed(rows) if "time_s" in r), 0.0)

    def on_validation_end(self, trainer, pl_module) -> None:
        val = pl_module.results.get("val")
        fitting = trainer.state.fn == "fit"  # not the final validate() with the best weights
        if trainer.sanity_checking or not fitting or not trainer.is_global_zero or not val:
            return
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "time_s": self.offset + time.perf_counter() - self.started,
            **{k: v for k, v in finite(val).items() if isinstance(v, int | float)},
        }
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
