"""Stopping a training cleanly, and one training per run directory.

Ctrl-C (SIGINT) and SIGTERM (what SLURM sends before it kills a job) stop a training at the
next step boundary, never inside one: Lightning's own SIGTERM handling (it stops after the
step, on every rank) does the stopping, and the first Ctrl-C is turned into it. ``Stop``
then writes ``last.ckpt`` at that boundary, which a ``resume=`` continues exactly as after a
SIGKILL; the command writes ``metrics.json`` with ``"status": "interrupted"``, finishes the
W&B run and exits with 130 (SIGINT) or 143 (SIGTERM). A second Ctrl-C stops at once.

``RankWatch``: under DDP, a process whose peer dies (a worker it launched, or the process
that launched it) says so in one line and exits at once, before its collective fails or the
communication library aborts it.

One training per run directory: ``seqlm.runs.lock``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stop(pl.Callback):
    """Turns the first Ctrl-C into a stop after the current step (a second one raises
    ``KeyboardInterrupt`` at once) and saves ``last.ckpt`` when Lightning stops for a signal.
    ``signum`` is the signal that stopped the run, ``None`` while none has."""

    def __init__(self, last: Path):
        self.last = last
        self.signum: int | None = None
        self._old = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._old = signal.signal(signal.SIGINT, self._on_sigint)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None

    def _on_sigint(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signal.SIGINT
        print("\nseqlm: stopping after this step (Ctrl-C again to stop at once)", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's stop after the step, on every rank

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SIGTERMException):
            self.signum = self.signum or signal.SIGTERM
            trainer.save_checkpoint(self.last)  # at a step boundary: resume continues exactly

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 1)


class RankWatch(pl.Callback):
    """One thread per DDP process while it trains: the first process waits on each worker it
    launched, a worker watches that its launcher is alive. A death that is not a clean exit
    prints one line naming the rank and ends this process (exit code 2), so nothing waits in
    a collective for a rank that will never come; ``resume=`` continues from the last
    checkpoint."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.active = False  # while fitting, and not stopping for a signal or an error

    def on_fit_start(self, trainer, pl_module) -> None:
        self.active = True
        if trainer.world_size < 2:
            return
        from seqlm.compat import launched_workers

        workers = launched_workers(trainer)
        first = trainer.node_rank * trainer.num_devices
        for i, proc in enumerate(workers, 1):
            threading.Thread(
                target=self._wait, args=(trainer, proc, first + i), daemon=True
            ).start()
        if "LOCAL_RANK" in os.environ and trainer.local_rank > 0:
            threading.Thread(target=self._watch_launcher, args=(trainer,), daemon=True).start()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.active = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.active = False  # a signal's stop (every rank exits) or this rank's own error

    def _wait(self, trainer, proc, rank: int) -> None:
        code = proc.wait()
        if code != 0 and self.active and not trainer.received_sigterm:
            self._stop(trainer, rank, f"exit code {code}")

    def _watch_launcher(self, trainer) -> None:
        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(0.2)
        if self.active and not trainer.received_sigterm:
            self._stop(trainer, trainer.node_rank * trainer.num_devices, "gone")

    def _stop(self, trainer, rank: int, how: str) -> None:
        line = rank_stopped(f"rank {rank}", trainer, how, self.run_dir)
        print(f"seqlm: error: {line}", file=sys.stderr, flush=True)
        os._exit(2)  # now: the collective this process is in would fail or hang


def rank_stopped(who: str, trainer, how: str, run_dir: Path) -> str:
    """What the survivors of a DDP run say when ``who`` (``rank 1``) stopped."""
    return (
        f"{who} of the {trainer.world_size}-process run stopped ({how}) at step "
        f"{trainer.global_step}; resume={run_dir} continues from its last checkpoint"
    )
