"""Content-addressed on-disk cache for the slow steps (baseline training, pruning + recovery).

Entries are keyed by a hash of everything that determines them, written
atomically (temporary file + rename) and stored with a digest of their bytes,
so a truncated or corrupt entry is detected and rebuilt instead of loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Bump when a change in code changes what a cached entry would contain.
RECIPE_VERSION = 1


def content_hash(obj: Any) -> str:
    blob = json.dumps({"v": RECIPE_VERSION, "obj": obj}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class TensorCache:
    """Stores dicts of tensors and plain values (loadable with ``weights_only=True``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def get_or_build(self, kind: str, key: str, build: Callable[[], dict]) -> tuple[dict, bool]:
        """Return ``(entry, hit)``; build and store the entry on a miss."""
        entry = self.get(kind, key)
        if entry is not None:
            return entry, True
        entry = build()
        self.put(kind, key, entry)
        return entry, False

    def get(self, kind: str, key: str) -> dict | None:
        return self._load(self._path(kind, key))

    def put(self, kind: str, key: str, entry: dict) -> None:
        buf = io.BytesIO()
        torch.save(entry, buf)
        payload = buf.getvalue()
        digest = hashlib.sha256(payload).hexdigest().encode()
        atomic_write_bytes(self._path(kind, key), digest + b"\n" + payload)

    def drop(self, kind: str, key: str) -> None:
        self._path(kind, key).unlink(missing_ok=True)

    @staticmethod
    def _load(path: Path) -> dict | None:
        if not path.exists():
            return None
        raw = path.read_bytes()
        digest, _, payload = raw.partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            log.warning("cache entry %s is corrupt (digest mismatch); rebuilding it", path)
            return None
        return torch.load(io.BytesIO(payload), weights_only=True)
