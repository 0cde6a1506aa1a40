"""An exported variant, loaded through its manifest with every file's hash checked, as a numpy function."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infersearch.errors import ConfigError


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
    """``manifest``: one already checked by :func:`read_manifest` (its files are not hashed again)."""
    manifest = manifest or read_manifest(model_dir)
    fmt = manifest["format"]
    if fmt not in _LOADERS:
        raise ConfigError(
            "serve.model_dir",
            f"{model_dir} holds a {fmt} artifact (a language model): not served yet; allowed: {', '.join(_LOADERS)}",
        )
    predict = _LOADERS[fmt](model_dir, manifest, threads)
    return Artifact(manifest, predict, digest(manifest))


def _onnx(model_dir: Path, manifest: dict, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # no busy-waiting between runs: a spinning pool takes the cores the event loop needs to answer
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def _openvino(model_dir: Path, manifest: dict, threads: int):
    import openvino as ov

    hint = (manifest.get("env") or {}).get("engine", {}).get("precision_hint", "f32")
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(str(model_dir / "model.xml"), "CPU", config)
    # one infer request per call: requests are not shared between the serving threads
    return lambda x: np.array(compiled.create_infer_request().infer({0: x})[0], copy=True)


def _torch(model_dir: Path, manifest: dict, threads: int):
    import torch

    torch.set_num_threads(threads)
    if manifest["format"] == "torch-export":
        module = torch.export.load(str(model_dir / "model.pt2")).module()
    else:
        module = torch.jit.load(str(model_dir / "model.torchscript.pt"))

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).float().numpy()

    return predict


_LOADERS = {"onnx": _onnx, "openvino-ir": _openvino, "torch-export": _torch, "torchscript": _torch}
