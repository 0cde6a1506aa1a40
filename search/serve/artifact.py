"""An exported variant, loaded through its manifest with every file's hash checked, as a numpy function."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infersearch.core.errors import ConfigError


@dataclass
class Artifact:
    manifest: dict[str, Any]
    predict: Callable[[np.ndarray], np.ndarray]  # (n, *sample_shape) float32 -> (n, ...) outputs
    digest: str  # SHA-256 over the manifest's file hashes: names this exact artifact in metrics

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return sample_shape(self.manifest)

    @property
    def trial(self) -> int | None:
        return self.manifest.get("trial")

    @property
    def study(self) -> str:
        return str((self.manifest.get("config") or {}).get("study", {}).get("name", ""))


def sample_shape(manifest: dict[str, Any]) -> tuple[int, ...]:
    """One sample's shape: the manifest's input shape after its batch axis."""
    return tuple(int(d) for d in manifest["input"]["shape"][1:])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest, after checking that every file it names is there with the hash it records."""
    path = model_dir / "manifest.json"
    if not path.is_file():
        raise ConfigError("serve.model_dir", f"{model_dir} has no manifest.json: point it at an exported model")
    manifest = json.loads(path.read_text())
    for name, expected in manifest["files"].items():
        file = model_dir / name
        if not file.is_file():
            raise ConfigError("serve.model_dir", f"{file} is missing (the manifest lists it): re-export the model")
        if _sha256(file) != expected:
            raise ConfigError("serve.model_dir", f"{file} does not match its manifest hash: altered since export")
    return manifest


def digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256("".join(sorted(manifest["files"].values())).encode()).hexdigest()


def load(model_dir: Path, threads: int, manifest: dict[str, Any] | None = None) -> Artifact:
    """``manifest``: one already checked by :func:`read_manifest` (its files are not hashed again). The
    format's engine says how it loads (infersearch.engines: ``ArtifactFormat.serve``)."""
    from infersearch.engines import FORMATS

    manifest = manifest or read_manifest(model_dir)
    fmt = FORMATS.get(manifest["format"])
    if fmt is None or fmt.serve is None:
        served = ", ".join(name for name, f in FORMATS.items() if f.serve is not None)
        raise ConfigError(
            "serve.model_dir", f"{model_dir} holds a {manifest['format']} artifact: not served yet; allowed: {served}"
        )
    return Artifact(manifest, fmt.serve(model_dir, manifest, threads), digest(manifest))
