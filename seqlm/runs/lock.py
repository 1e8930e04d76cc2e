"""``RunLock``: a run directory in use holds ``.lock`` with the owner's pid; a second ``train``
in it is refused in one line while the owner lives, and a lock left by a process that is gone
is taken over."""

from __future__ import annotations

import os
from pathlib import Path

from seqlm.errors import SeqlmError
from seqlm.files import alive, reason


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/.lock`` (the pid) for the run's length."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and alive(owner) and owner != os.getpid():
                    raise SeqlmError(
                        f"{self.path.parent}: in use by a running seqlm (pid {owner}); wait for "
                        f"it, or stop it first (its lock: {self.path})"
                    ) from None
                print(f"seqlm: taking over the lock of a run that is gone ({self.path})")
                self.path.unlink(missing_ok=True)
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(f"{os.getpid()}\n")
            except OSError as e:  # a full disk: no lock left behind, one line
                self.path.unlink(missing_ok=True)
                raise SeqlmError(f"{self.path}: cannot write it ({reason(e)})") from None
            return self

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None  # half-written by a process killed between create and write: stale

    def __exit__(self, *exc) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
