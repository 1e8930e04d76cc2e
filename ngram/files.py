"""Files written whole or not at all: to a temporary name beside the file, flushed to disk,
then renamed over it. A full disk, a read-only folder or a kill midway leaves the previous
version as it was and nothing half-written under the file's name."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ngram.errors import NgramError

REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "its folder does not exist",
    errno.EFBIG: "file too large",
}


def reason(e: OSError) -> str:
    """What an ``OSError`` of a write means, in words."""
    if e.errno is None and " requested and " in str(e):  # numpy's tofile: a short write
        return REASONS[errno.ENOSPC]
    return REASONS.get(e.errno) or e.strerror or str(e) or type(e).__name__


@contextmanager
def written(path: str | Path, error: type[Exception] = NgramError) -> Iterator[Path]:
    """``with written(path) as tmp:`` write ``tmp`` (same folder, same suffix); on leaving the
    block it is synced and renamed onto ``path``. Any ``OSError`` becomes one ``error`` line
    that names ``path``; the temporary file is removed whatever happens (a SIGKILL leaves a
    dot-file, never ``path``)."""
    path = Path(path)
    suffixes = "".join(path.suffixes)  # kept last: savefig and gzip read the type from them
    tmp = path.with_name(f".{path.name.removesuffix(suffixes)}.tmp-{os.getpid()}{suffixes}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        raise error(
            f"{path}: cannot write it ({reason(e)}); any earlier version is unchanged"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
