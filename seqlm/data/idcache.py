"""The token-id cache: a corpus tokenized once, its splits kept as raw int32 files that every
later run memory-maps (a 100M-token corpus costs 400 MB of disk, and of memory only the pages
read).

One folder per corpus and vocabulary setting, ``{cache}/ids/{name}-{key}/``:

    train.ids, valid.ids, test.ids    raw int32 ids (this machine's byte order), <eos> after
                                      each line
    vocab.json                        the vocabulary (``Vocab.save``)
    manifest.json                     written last: each split's token count and CRC-32, the
                                      vocabulary's digest

The folder is built under a temporary name and renamed whole, so a run killed while
tokenizing leaves no folder under the final name. A folder whose manifest is missing or does
not match its files (truncated, overwritten, half-copied) is rebuilt, with one line saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seqlm.data.vocab import Vocab
from seqlm.errors import SeqlmError
from seqlm.files import alive, reason

SPLIT_FILE = "{}.ids"
CRC_BLOCK = 1 << 24  # bytes checksummed at a time
STALE_S = 24 * 3600  # another host's temporary folder untouched this long is abandoned


class Damaged(Exception):
    """A cache folder that must not be read."""


def crc32(path: Path) -> int:
    value = 0
    with path.open("rb") as f:
        while block := f.read(CRC_BLOCK):
            value = zlib.crc32(block, value)
    return value


def read(
    folder: Path, splits: tuple[str, ...], verify: bool = True
) -> tuple[Vocab, dict[str, np.ndarray]]:
    """The vocabulary and each split's ids (read-only memory maps) of a complete cache folder;
    ``Damaged`` saying why when it is not one. ``verify``: also check each file's CRC-32 (a
    pass over the ids, ~0.3 s at 100M tokens; not for a folder this process just wrote)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        vocab = Vocab.load(folder / "vocab.json")
    except Exception as e:  # noqa: BLE001 - any failure to read means: rebuild
        raise Damaged(f"unreadable manifest or vocabulary ({type(e).__name__})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise Damaged("manifest.json is not a manifest")
    if vocab.digest() != manifest.get("vocab_hash"):
        raise Damaged("vocab.json does not match its manifest")
    ids = {}
    for split in splits:
        entry = manifest["splits"].get(split)
        path = folder / SPLIT_FILE.format(split)
        if not isinstance(entry, dict) or not path.is_file():
            raise Damaged(f"{path.name} is missing")
        n = entry.get("tokens")
        if not isinstance(n, int) or path.stat().st_size != 4 * n:
            raise Damaged(f"{path.name} has {path.stat().st_size} bytes, not 4 x {n}")
        if verify and crc32(path) != entry.get("crc32"):
            raise Damaged(f"{path.name} fails its checksum")
        ids[split] = np.memmap(path, np.int32, "r", shape=(n,)) if n else np.zeros(0, np.int32)
    return vocab, ids


def build(
    folder: Path,
    splits: tuple[str, ...],
    encode: Callable[[Path], tuple[Vocab, dict[str, np.ndarray]]],
) -> tuple[Vocab, dict[str, np.ndarray]]:
    """Make ``folder`` with ``encode(tmp)`` (which writes each split's ids to
    ``tmp/{split}.ids`` and returns the vocabulary), then read it. A folder there already,
    complete, is read instead; a damaged one is replaced."""
    if folder.exists():
        try:
            return read(folder, splits)
        except Damaged as why:
            print(
                f"seqlm: the id cache {folder} is damaged ({why}); rebuilding it", file=sys.stderr
            )
            shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        vocab, ids = encode(tmp)
        vocab.save(tmp / "vocab.json")
        entries = {}
        for split in splits:
            path = tmp / SPLIT_FILE.format(split)
            if isinstance(ids[split], np.memmap):
                ids[split].flush()
            entries[split] = {"tokens": len(ids[split]), "crc32": crc32(path)}
        del ids  # the maps of the temporary folder
        manifest = {"splits": entries, "vocab_hash": vocab.digest(), "format": 1}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        try:
            tmp.rename(folder)
        except OSError:  # another process (a DDP rank) finished first: read its folder
            if not folder.exists():
                raise
    except OSError as e:  # a full disk, a read-only cache: nothing is left half-written
        raise SeqlmError(f"{folder}: cannot write the id cache ({reason(e)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read(folder, splits, verify=False)  # renamed whole: ours, or a rank's that won


def remove_abandoned(folder: Path) -> None:
    """Temporary folders of ``folder`` left by processes that are gone (killed mid-write). A
    folder names its writer's host and pid: on a file system that several nodes share, a pid
    says nothing of another host's processes, so another host's folder is removed only when
    untouched for ``STALE_S``."""
    here = socket.gethostname()
    for tmp in folder.parent.glob(f"{folder.name}.tmp-*"):
        host, _, pid = tmp.name[len(folder.name) + len(".tmp-") :].rpartition("-")
        if not pid.isdigit():
            continue
        if host == here:
            gone = not alive(int(pid))
        else:
            try:
                gone = time.time() - tmp.stat().st_mtime > STALE_S
            except OSError:  # removed meanwhile
                continue
        if gone:
            shutil.rmtree(tmp, ignore_errors=True)
