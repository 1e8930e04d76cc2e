"""Reading a W&B run back from its files, without the network. wandb 0.31 ships no Python
reader for its offline ``.wandb`` files and writes neither summary nor config as files offline,
so the tests read the records themselves: the LevelDB log format, CRC-checked, of protobuf
``Record`` messages."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version
_RECORD = struct.Struct("<IHB")  # crc32, length, type (LevelDB log format)
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> Iterator[Any]:
    """Every record of a ``run-*.wandb`` file (the LevelDB log format W&B writes), as
    ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _ = _HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B run file")
    pos, parts = _HEADER.size, []
    while pos + _RECORD.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD.size:  # the rest of a block too short for a header is padding
            pos += left
            continue
        crc, length, kind = _RECORD.unpack_from(data, pos)
        if kind == 0 and length == 0:
            pos += left
            continue
        body = data[pos + _RECORD.size : pos + _RECORD.size + length]
        pos += _RECORD.size + length
        if zlib.crc32(bytes([kind]) + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: corrupt record at byte {pos}")
        parts.append(body)
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def read_wandb_run(run_dir: Path) -> dict[str, Any]:
    """``{"config", "summary", "history", "group", "exit_code"}`` of the one W&B run under
    ``run_dir/wandb``, from its files alone.

    A run this process made (``train()`` called in a test) is read after W&B's service has
    shut down, as it does when a user's command exits: ``run.finish()`` returns once the
    service has the exit record, and its writer may hold the record's bytes a while longer
    while the service lives on, as it does inside pytest (a read there once found no exit
    code in a full suite)."""
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    files = sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"))
    if len(files) != 1:
        raise ValueError(f"{run_dir}: expected one W&B run, found {len(files)}")
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "group": None}
    out["exit_code"] = None

    def items(updates) -> dict[str, Any]:
        return {
            u.key or "/".join(u.nested_key): json.loads(u.value_json)
            for u in updates
            if u.value_json
        }

    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"] = record.run.run_group or None
            out["config"].update(items(record.run.config.update))
        elif kind == "config":
            out["config"].update(items(record.config.update))
        elif kind == "history":
            out["history"].append(items(record.history.item))
        elif kind == "summary":
            out["summary"].update(items(record.summary.update))
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
