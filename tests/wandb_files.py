"""Reads what W&B wrote in offline mode (the run's ``.wandb`` record log) back into Python.

The file is W&B's 7-byte header followed by a LevelDB-style log of protobuf ``Record``s
(32 KiB blocks, each chunk: crc32c 4 bytes, length 2, type 1). No mock: the test reads
the bytes wandb itself wrote and decodes them with wandb's own protobuf classes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, out, parts = 7, [], []
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += room
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        parts.append(chunk)
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            out.append(record)
            parts = []
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class Run:
    id: str
    name: str
    group: str
    job_type: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[Any] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def read_run(run_dir: Path) -> Run:
    (path,) = run_dir.glob("*.wandb")
    run = None
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = Run(r.run.run_id, r.run.display_name, r.run.run_group, r.run.job_type)
            run.config.update({_key(i): json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "artifact":
            run.artifacts.append(r.artifact)
    run.files = [p for p in (run_dir / "files").rglob("*") if p.is_file()]
    return run


def read_runs(wandb_dir: Path) -> list[Run]:
    return [read_run(d) for d in sorted(wandb_dir.glob("offline-run-*"))]
