"""``history.jsonl`` of a run directory (``seqlm.runs.rundir``), written while training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl

from seqlm.evaluation.schema import finite
from seqlm.files import write_text


class History(pl.Callback):
    """``history.jsonl``: one line per validation, with the epoch, step, training targets so
    far (``tokens``, every rank's), wall time since the start of training and the validation
    metrics; ``compare`` plots it. Rank 0 writes; a resumed
    run appends, its clock continuing from the checkpoint's (which it saves), else from the
    last line."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0.0
        self.started = time.perf_counter()
        self.restored = False

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()
        if not self.restored and self.path.exists():  # the last validation line's clock
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            self.offset = next((r["time_s"] for r in reversed(rows) if "time_s" in r), 0.0)

    def state_dict(self) -> dict[str, float]:
        """The training time so far, kept in checkpoints: a run killed after its last
        validation resumes with the time it had trained since."""
        return {"time_s": self.offset + time.perf_counter() - self.started}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.offset = float(state.get("time_s", self.offset))
        self.started = time.perf_counter()
        self.restored = True

    def on_validation_end(self, trainer, pl_module) -> None:
        val = pl_module.results.get("val")
        fitting = trainer.state.fn == "fit"  # not the final validate() with the best weights
        if trainer.sanity_checking or not fitting or not trainer.is_global_zero or not val:
            return
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "tokens": pl_module.tokens_trained(),
            "time_s": self.offset + time.perf_counter() - self.started,
            **{k: v for k, v in finite(val).items() if isinstance(v, int | float)},
        }
        # rewritten whole with the new line (a full disk never leaves half a line)
        old = self.path.read_text() if self.path.exists() else ""
        write_text(self.path, old + json.dumps(row) + "\n")
