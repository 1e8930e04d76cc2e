"""Downloads: fetched once into a cache, checked against sha256, written atomically."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ngram.files import reason
from seqlm.errors import SeqlmError


def cache_dir() -> Path:
    """``$SEQLM_DATA`` if set, else ``~/.cache/seqlm``."""
    return Path(os.environ.get("SEQLM_DATA") or Path.home() / ".cache" / "seqlm")


def sha256_text_bytes(path: Path) -> str:
    """sha256 of a file's uncompressed bytes (a ``.gz`` file is hashed after decompression)."""
    h = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hasher(digest: str):
    """The algorithm and expected hex of ``digest``: a bare sha256, or ``ALGO:HEX`` for a
    source that publishes only another hash (``sha1:...``)."""
    algo, _, hexdigest = digest.rpartition(":")
    return hashlib.new(algo or "sha256"), algo or "sha256", hexdigest


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` unless it is there already. The bytes go to a temporary file
    beside ``dest`` and are renamed into place only once their hash (``sha256``, or a
    ``hasher`` digest) matches, so an interrupted or corrupted download never leaves a file
    that looks complete."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    h, algo, want = hasher(sha256)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        if h.hexdigest() != want:
            raise SeqlmError(
                f"{url}: downloaded file has {algo} {h.hexdigest()}, expected {want}; "
                "refusing it (corrupted or changed upstream)"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        if isinstance(e, OSError) and not isinstance(e, urllib.error.URLError) and e.errno:
            raise SeqlmError(f"{dest}: cannot write the download ({reason(e)})") from None
        raise SeqlmError(
            f"{url}: download failed ({e}); give the files with data.root=DIR instead"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract(archive: Path, member: str, dest: Path, digest: str) -> Path:
    """``member`` of the zip ``archive`` to ``dest``, checked against ``digest`` (as
    ``download``'s) and renamed into place only then."""
    import zipfile

    from seqlm.files import written

    h, algo, want = hasher(digest)
    try:
        with zipfile.ZipFile(archive) as z, z.open(member) as src, written(dest) as tmp:
            with tmp.open("wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
            if h.hexdigest() != want:  # raised inside: the member never takes dest's name
                raise SeqlmError(f"{archive}: {member} has {algo} {h.hexdigest()}, expected {want}")
    except (zipfile.BadZipFile, KeyError) as e:
        raise SeqlmError(f"{archive}: cannot extract {member} ({e})") from None
    return dest
