"""Language models on ONNX Runtime: the decoder exported with its KV cache as explicit inputs and outputs,
int4 weights through ONNX Runtime's ``MatMulNBitsQuantizer`` (block size = ``quant.group_size``, accuracy
level = ``quant.accuracy_level``: 4 = int8 activations inside the kernel; zero points unless
``quant.symmetric``) or dynamic int8 (``quantize_dynamic``), fed back step by step.

The export wraps the model so the past keys and values are flat tensors (``past_{2i}``, ``past_{2i+1}`` for
layer i, ``[batch, kv_heads, past, head_dim]``) and the present ones come out (TorchScript exporter, eager
attention: SDPA's symbolic causal flag does not export). One graph serves the prefill (past of length 0),
the decode step and whole blocks (perplexity). The timed step feeds the cache of the mean context and
discards the present one, so every call is the same step, as on PyTorch (decode.py).
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from infersearch.config import GenConfig
from infersearch.core.device import Capabilities
from infersearch.core.errors import UnsupportedError, library_step
from infersearch.engines.base import ArtifactFormat, BuildContext, Runner, Saved, file_mb, register_format
from infersearch.engines.decode import cache_argument, context_ids
from infersearch.passes.quantize import QuantPlan

ONNX_CAUSAL_LM = register_format(
    ArtifactFormat(
        "onnx-causal-lm",
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
        "y = ids",
    )
)


def plan_onnx_lm(bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
    """ONNX Runtime's CPU path: fp32 activations; int4 MatMulNBits or dynamic int8 weights."""
    if caps.device != "cpu" or precision != "fp32":
        raise UnsupportedError(
            "precision", f"{precision} on {caps.device} with onnxruntime for a language model: allowed fp32 on cpu"
        )
    if bits == 32:
        return QuantPlan(32, "none", "none")
    if bits == 8 and scheme in ("auto", "dynamic"):
        return QuantPlan(8, "onnxruntime-quantize_dynamic-int8", "real")
    if bits == 4 and scheme in ("auto", "weight_only"):
        return QuantPlan(4, "onnxruntime-matmulnbits-int4", "real")
    allowed = "dynamic (or auto)" if bits == 8 else "weight_only (or auto)"
    raise UnsupportedError("quant.scheme", f"{scheme} with quant.bits={bits} on onnxruntime for a language model: "
                                           f"allowed {allowed}")  # fmt: skip


class FlatKV(nn.Module):
    """``(input_ids, *past)`` -> ``(logits, *present)``: the cache as plain tensors, for the exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(cache.layers):  # the past as it is: no empty tensor to start from, which
            layer.keys, layer.values = past[2 * i], past[2 * i + 1]  # OpenVINO's PyTorch frontend refuses
            layer.dtype, layer.device, layer.is_initialized = past[0].dtype, past[0].device, True
        out = self.model(input_ids=input_ids, **{cache_argument(self.model): cache}, use_cache=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def kv_shape(model: nn.Module) -> tuple[int, int, int]:
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return c.num_hidden_layers, c.num_key_value_heads, head_dim


def export(model: nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    layers, kv, hd = kv_shape(model)
    m = copy.deepcopy(model).float().cpu().eval()
    m.config._attn_implementation = "eager"
    ids = torch.zeros((2, 3), dtype=torch.long)
    past = [torch.zeros((2, kv, 2, hd)) for _ in range(2 * layers)]
    names = [f"past_{i}" for i in range(2 * layers)]
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}}
    axes |= {n: {0: "batch", 2: "past"} for n in names} | {
        f"present_{i}": {0: "batch", 2: "total"} for i in range(2 * layers)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            FlatKV(m), (ids, *past), str(path), dynamo=False, opset_version=17, dynamic_axes=axes,
            input_names=["input_ids", *names], output_names=["logits", *(f"present_{i}" for i in range(2 * layers))],
        )  # fmt: skip
    return path


def quantize(path: Path, qplan: QuantPlan, ctx: BuildContext, out: Path) -> Path:
    if qplan.method == "onnxruntime-matmulnbits-int4":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(onnx.load(str(path)), bits=4, block_size=ctx.group_size, is_symmetric=ctx.symmetric,
                                 accuracy_level=ctx.accuracy_level)  # fmt: skip
        q.process()
        q.model.save_model_to_file(str(out), use_external_data_format=False)
        return out
    if qplan.method == "onnxruntime-quantize_dynamic-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, per_channel=True)
        return out
    return path


def cpu_session(path: Path, threads: int, engine: str):
    """A decoder's ONNX Runtime session on the CPU: the trial's threads, every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with library_step("compile", engine):
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_lm_runner(model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
    import onnxruntime as ort

    with library_step("export", "onnxruntime"):
        path = export(model, ctx.workdir / "model.onnx")
    with library_step("quantize", "onnxruntime"):
        path = quantize(path, qplan, ctx, ctx.workdir / "model.q.onnx")
    session = cpu_session(path, ctx.threads, "onnxruntime")

    def save(target: Path) -> Saved:
        target.mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(target)
        return Saved(ONNX_CAUSAL_LM.name, [Path(shutil.copy2(path, target / "model.onnx")), target / "config.json"])

    settings = {"engine": "onnxruntime", "version": ort.__version__, "precision": "fp32", "kv_cache": "explicit",
                "quantized": qplan.method, "intra_op_num_threads": ctx.threads}  # fmt: skip
    return flat_kv_runner(model, gen, lambda feed: session.run(None, feed), file_mb(path), save, settings)


def flat_kv_runner(model: nn.Module, gen: GenConfig, call, size_mb: float, save, settings: dict[str, Any]) -> Runner:
    """A runner over a graph that takes ``input_ids`` and the past cache as ``past_*`` arrays and returns
    ``(logits, *present)``: ``call(feed)`` runs it (ONNX Runtime's session, for onnxruntime and onnxruntime_genai)."""
    layers, kv, hd = kv_shape(model)
    at, names = gen.context, [f"past_{i}" for i in range(2 * layers)]

    def empty(batch: int) -> dict[str, np.ndarray]:
        return {n: np.zeros((batch, kv, 0, hd), np.float32) for n in names}

    def prepare(x: torch.Tensor) -> dict[str, np.ndarray]:
        ids = np.ascontiguousarray(context_ids(x, at + 1).numpy().astype(np.int64))
        present = call({"input_ids": ids[:, :at], **empty(len(ids))})[1:]
        return {"input_ids": ids[:, at:], **dict(zip(names, present))}

    def forward(ids: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(call({"input_ids": ids.numpy().astype(np.int64), **empty(len(ids))})[0]))

    def prefill(x: torch.Tensor) -> Any:
        ids = np.ascontiguousarray(x[:, : gen.prompt_tokens].numpy().astype(np.int64))
        return call({"input_ids": ids, **empty(len(ids))})[0][:, -1]

    return Runner(
        prepare=prepare,
        run=lambda feed: call(feed)[0],  # the present cache is not kept: the same step again next time
        to_torch=lambda y: torch.from_numpy(np.asarray(y)),
        size_mb=size_mb,
        save=save,
        settings=settings,
        forward=forward,
        prefill=prefill,
    )
