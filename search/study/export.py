"""The recommended configuration, rebuilt and saved in its engine's own format with a manifest: the runner
says which format it wrote, and that format (registered by its engine, infersearch.engines) gives the
manifest its load recipe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from infersearch.core.cache import atomic_write_text
from infersearch.study.attrs import attrs_of


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_trial(trial: FrozenTrial, out_dir: Path, metrics: dict[str, Any] | None = None) -> Path:
    """Rebuild the trial's variant from its stored config (cached steps are reused) and
    save it to ``out_dir/model``; the folder is swapped in whole, never half-written. ``metrics``: the
    figures the study reports for it (study/figures.py: confirmed, on the current anchor), which the
    serving SLO and alerts derive from; its first measurement when not given."""
    from infersearch.engines import FORMATS
    from infersearch.trial.evaluate import rebuild

    a = attrs_of(trial)
    stored: dict[str, Any] = dict(a.config)
    _, built = rebuild(stored)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    saved = built.runner.save(staging)
    fmt = FORMATS[saved.format]
    files = saved.files + _save_tokenizer(built.task.tokenizer, staging)
    x = built.task.example_input(1)
    hint = built.runner.settings.get("precision_hint", "")
    shape = ["batch", "tokens"] if built.task.generation else ["batch", *x.shape[1:]]
    manifest = {
        "trial": trial.number if trial.number >= 0 else None,  # -1: a trial made outside a study (create_trial)
        "format": fmt.name,
        "files": {f.name: _sha256(f) for f in files},
        "input": {"name": "input_ids" if built.task.generation else "input", "shape": shape, "dtype": str(x.dtype)[6:]},
        "params": a.params,
        "metrics": metrics or a.metrics,
        "env": a.env,
        "config": stored,
        "load": fmt.load_recipe(hint),
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


def _save_tokenizer(tok: Any, folder: Path) -> list[Path]:
    """A language model's tokenizer beside it: ``tokenizers``' JSON, or a transformers tokenizer's files."""
    if tok is None:
        return []
    from tokenizers import Tokenizer

    if not isinstance(tok, Tokenizer):  # a transformers tokenizer
        return [Path(p) for p in tok.save_pretrained(folder)]
    tok.save(str(folder / "tokenizer.json"))
    return [folder / "tokenizer.json"]
