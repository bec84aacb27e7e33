"""Read back a ``.wandb`` file: W&B's append-only log of protobuf ``Record`` messages.

The container is LevelDB's log format with CRC32 checksums: 32 KiB blocks, the file
starting with a 7-byte header (``:W&B``, magic 0xBEE1, version 0); each chunk has a 7-byte
header (checksum u32, length u16, type u8: FULL=1, FIRST=2, MIDDLE=3, LAST=4); a block
tail shorter than a chunk header is zero padding. Written here rather than imported
because wandb no longer ships a Python reader.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record in the file, checksums verified."""
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B" and magic == 0xBEE1 and version == 0, (ident, magic, version)
    pos = HEADER
    records = []
    pending = b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:  # zero padding / preallocated tail
            pos += left
            continue
        if pos + HEADER + length > len(data):
            break  # a chunk still being written
        chunk = data[pos + HEADER : pos + HEADER + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == checksum, f"bad checksum at {pos}"
        pos += HEADER + length
        if kind == FULL:
            payload = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        else:
            payload = pending + chunk
            pending = b""
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(payload)
        records.append(rec)
    return records


def read_run(path: Path, wait_s: float = 30.0) -> dict[str, Any]:
    """The config, history rows and exit code stored in a ``.wandb`` file.

    ``run.finish()`` returns once the run is handed to wandb's service process, which may
    write the last records a moment later: wait (up to ``wait_s``) for the exit record.
    """
    deadline = time.monotonic() + wait_s
    while True:
        data = _read_run(path)
        if data["exit_code"] is not None or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def _read_run(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    exit_code = None
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            for item in rec.run.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            history.append(
                {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in rec.history.item}
            )
        elif kind == "exit":
            exit_code = rec.exit.exit_code
    return {"config": config, "history": history, "exit_code": exit_code}
