"""Every file seqlm writes is written whole or not at all (``ngram.files.written``): to a
temporary name beside it, synced, then renamed. A full disk, a read-only folder or a kill
leaves the earlier version as it was, and the user one line that names the file."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ngram import files
from ngram.files import reason
from seqlm.errors import SeqlmError

__all__ = ["alive", "reason", "write_text", "written"]

written = partial(files.written, error=SeqlmError)  # `with written(path) as tmp:`


def write_text(path: str | Path, text: str) -> Path:
    """``path`` holds ``text`` (UTF-8), whole or not at all."""
    with written(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (the owner of a lock or a temporary
    file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
