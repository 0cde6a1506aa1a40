"""The recommended configuration, rebuilt and saved in its engine's own format with a manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from infersearch.cache import atomic_write_text
from infersearch.study.attrs import attrs_of

LOAD = {
    "onnx": (
        "import numpy as np, onnxruntime as ort\n"
        "session = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])\n"
        "y = session.run(None, {'input': x.astype(np.float32)})[0]"
    ),
    "openvino-ir": (
        "import openvino as ov\n"
        "compiled = ov.Core().compile_model('model.xml', 'CPU', {{'INFERENCE_PRECISION_HINT': {hint!r}}})\n"
        "y = compiled(x)[0]"
    ),
    "torch-export": "import torch\nmodel = torch.export.load('model.pt2').module()\ny = model(x)",
    "torchscript": "import torch\nmodel = torch.jit.load('model.torchscript.pt')\ny = model(x)",
}


def _format(files: list[Path]) -> str:
    suffixes = {f.name for f in files}
    if "model.onnx" in suffixes:
        return "onnx"
    if "model.xml" in suffixes:
        return "openvino-ir"
    return "torch-export" if "model.pt2" in suffixes else "torchscript"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_trial(trial: FrozenTrial, out_dir: Path, metrics: dict[str, Any] | None = None) -> Path:
    """Rebuild the trial's variant from its stored config (cached steps are reused) and
    save it to ``out_dir/model``; the folder is swapped in whole, never half-written. ``metrics``: the
    figures the study reports for it (study/figures.py: confirmed, on the current anchor), which the
    serving SLO and alerts derive from; its first measurement when not given."""
    from infersearch.trial import rebuild

    a = attrs_of(trial)
    stored: dict[str, Any] = dict(a.config)
    _, built = rebuild(stored)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    files = built.runner.save(staging)
    fmt = _format(files)
    x = built.task.example_input(1)
    hint = built.runner.settings.get("precision_hint", "")
    manifest = {
        "trial": trial.number,
        "format": fmt,
        "files": {f.name: _sha256(f) for f in files},
        "input": {"name": "input", "shape": ["batch", *x.shape[1:]], "dtype": "float32"},
        "params": a.params,
        "metrics": metrics or a.metrics,
        "env": a.env,
        "config": stored,
        "load": LOAD[fmt].format(hint=hint) if fmt == "openvino-ir" else LOAD[fmt],
    }
    atomic_write_text(staging / "manifest.json", json.dumps(manifest, indent=2, default=str))
    target = out_dir / "model"
    old = out_dir / ".model-old"
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target
