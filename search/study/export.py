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
    # language models (engines/decode.py): float weights as Hugging Face saves them; torchao's quantized
    # weights (tensor subclasses) as a state dict beside the config (torchao must be importable to load it)
    "hf-causal-lm": (
        "import torch\nfrom transformers import AutoModelForCausalLM\nfrom tokenizers import Tokenizer\n"
        "model, tok = AutoModelForCausalLM.from_pretrained('.'), Tokenizer.from_file('tokenizer.json')\n"
        "y = model.generate(torch.tensor([tok.encode(text).ids]), max_new_tokens=32)"
    ),
    "onnx-causal-lm": (
        "import numpy as np, onnxruntime as ort, json\nfrom tokenizers import Tokenizer\n"
        "c, tok = json.load(open('config.json')), Tokenizer.from_file('tokenizer.json')\n"
        "session = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])\n"
        "kv, hd = c['num_key_value_heads'], c.get('head_dim') or c['hidden_size'] // c['num_attention_heads']\n"
        "past = {f'past_{i}': np.zeros((1, kv, 0, hd), np.float32) for i in range(2 * c['num_hidden_layers'])}\n"
        "ids = np.array([tok.encode(text).ids], np.int64)\n"
        "for _ in range(32):  # greedy, the KV cache fed back\n"
        "    logits, *present = session.run(None, {'input_ids': ids[:, -1:] if _ else ids, **past})\n"
        "    past = dict(zip(past, present))\n"
        "    ids = np.concatenate([ids, logits[:, -1:].argmax(-1)], axis=1)\n"
        "y = ids"
    ),
    "openvino-causal-lm": (
        "import numpy as np, openvino as ov, json\nfrom tokenizers import Tokenizer\n"
        "c, tok = json.load(open('config.json')), Tokenizer.from_file('tokenizer.json')\n"
        "compiled = ov.Core().compile_model('model.xml', 'CPU', {{'INFERENCE_PRECISION_HINT': {hint!r}}})\n"
        "kv, hd = c['num_key_value_heads'], c.get('head_dim') or c['hidden_size'] // c['num_attention_heads']\n"
        "past = {{f'past_{{i}}': np.zeros((1, kv, 0, hd), np.float32) for i in range(2 * c['num_hidden_layers'])}}\n"
        "ids = np.array([tok.encode(text).ids], np.int64)\n"
        "for _ in range(32):  # greedy, the KV cache fed back\n"
        "    logits, *present = compiled({{'input_ids': ids[:, -1:] if _ else ids, **past}}).values()\n"
        "    past = dict(zip(past, present))\n"
        "    ids = np.concatenate([ids, logits[:, -1:].argmax(-1)], axis=1)\n"
        "y = ids"
    ),
    "hf-config+torchao-state": (
        "import torch, torchao  # noqa: F401 (its tensor types)\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\nfrom tokenizers import Tokenizer\n"
        "model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained('.'), dtype=torch.bfloat16)\n"
        "model.load_state_dict(torch.load('model_state.pt', weights_only=False), assign=True)\n"
        "tok = Tokenizer.from_file('tokenizer.json')\n"
        "y = model.generate(torch.tensor([tok.encode(text).ids]), max_new_tokens=32)"
    ),
}


def _format(files: list[Path]) -> str:
    suffixes = {f.name for f in files}
    if {"model.onnx", "config.json"} <= suffixes:
        return "onnx-causal-lm"
    if {"model.xml", "config.json"} <= suffixes:
        return "openvino-causal-lm"
    if "model_state.pt" in suffixes:
        return "hf-config+torchao-state"
    if "config.json" in suffixes:
        return "hf-causal-lm"
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
    files += _save_tokenizer(built.task.tokenizer, staging)
    x = built.task.example_input(1)
    hint = built.runner.settings.get("precision_hint", "")
    shape = ["batch", "tokens"] if built.task.generation else ["batch", *x.shape[1:]]
    manifest = {
        "trial": trial.number,
        "format": fmt,
        "files": {f.name: _sha256(f) for f in files},
        "input": {"name": "input_ids" if built.task.generation else "input", "shape": shape, "dtype": str(x.dtype)[6:]},
        "params": a.params,
        "metrics": metrics or a.metrics,
        "env": a.env,
        "config": stored,
        "load": LOAD[fmt].format(hint=hint) if fmt.startswith("openvino") else LOAD[fmt],
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
    if hasattr(tok, "save_pretrained"):
        return [Path(p) for p in tok.save_pretrained(folder)]
    tok.save(str(folder / "tokenizer.json"))
    return [folder / "tokenizer.json"]
