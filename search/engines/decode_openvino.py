"""Language models on OpenVINO in the form its own tools deploy them (optimum-intel, openvino-genai): the
decoder converted by OpenVINO's PyTorch frontend (attention stays one ``ScaledDotProductAttention`` op), its
KV cache made the infer request's state, with a ``beam_idx`` input. That is the pattern the CPU plugin fuses
into attention over its own cache, whose precision ``quant.kv_cache`` sets (``KV_CACHE_PRECISION``: f32, f16,
u8; auto = the plugin's choice), kept in the model's ``runtime_options`` so the saved model compiles the same.
Weights compressed by NNCF (``nncf.compress_weights``): int8 asymmetric per channel, or int4 symmetric
(``quant.symmetric``, else with zero points) in groups of ``quant.group_size`` for ``quant.int4_ratio`` of the
layers, by NNCF's data-free sensitivity, the rest int8; a layer whose width the group does not divide is left
as it is, as torchao does; NNCF's defaults otherwise: the embeddings and the last layer stay int8.

The timed decode step generates: the prompt's cache is made once, then each call appends one token, and after
``gen.new_tokens`` calls the prompt's cache is put back (one copy per ``new_tokens`` steps), so the steps'
mean context is the one TPOT is defined at (``prompt_tokens + new_tokens / 2``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from infersearch.config import GenConfig
from infersearch.core.device import Capabilities
from infersearch.core.errors import UnsupportedError, library_step
from infersearch.engines.base import ArtifactFormat, BuildContext, Runner, Saved, file_mb, register_format
from infersearch.engines.decode import context_ids
from infersearch.engines.decode_onnx import FlatKV, kv_shape
from infersearch.passes.quantize import QuantPlan

HINT = {"fp32": "f32", "bf16": "bf16"}
OPENVINO_CAUSAL_LM = register_format(
    ArtifactFormat(
        "openvino-causal-lm",
        "import numpy as np, openvino as ov\nfrom tokenizers import Tokenizer\n"
        "tok = Tokenizer.from_file('tokenizer.json')  # the KV cache's precision is in the model's runtime_options\n"
        "compiled = ov.Core().compile_model('model.xml', 'CPU', {'INFERENCE_PRECISION_HINT': $hint})\n"
        "request = compiled.create_infer_request()  # stateful: the request keeps the KV cache\n"
        "ids = np.array([tok.encode(text).ids], np.int64)\n"
        "for _ in range(32):  # greedy\n"
        "    feed = {'input_ids': ids[:, -1:] if _ else ids, 'beam_idx': np.zeros(1, np.int32)}\n"
        "    logits = request.infer(feed)['logits']\n"
        "    ids = np.concatenate([ids, logits[:, -1:].argmax(-1)], axis=1)\n"
        "y = ids",
    )
)


def plan_openvino_lm(bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
    """OpenVINO's CPU path: fp32, or bf16 where the CPU has it; NNCF weight compression."""
    if caps.device != "cpu" or precision not in ("fp32", "bf16"):
        raise UnsupportedError("precision", f"{precision} on {caps.device} with openvino for a language model: "
                                            "allowed fp32, bf16 on cpu")  # fmt: skip
    caps.check_precision(precision)  # OpenVINO converts bf16 without native instructions: slower, refused
    if bits == 32:
        return QuantPlan(32, "none", "none")
    if scheme not in ("auto", "weight_only"):
        raise UnsupportedError("quant.scheme", f"{scheme} on openvino for a language model: allowed weight_only "
                                               "(or auto), NNCF's weight compression")  # fmt: skip
    return QuantPlan(bits, f"nncf-int{bits}-weights", "real")


def stateful_model(model: nn.Module):
    """``input_ids``, ``beam_idx`` -> ``logits``, the cache in the request's state (one variable per past
    tensor, started empty at the batch of ``input_ids``)."""
    import openvino as ov
    from openvino import opset13 as op
    from openvino._offline_transformations import apply_make_stateful_transformation

    layers, kv, hd = kv_shape(model)
    m = copy.deepcopy(model).float().cpu().eval()
    m.config._attn_implementation = "sdpa"  # converted to OpenVINO's own attention op
    names = [f"past_{i}" for i in range(2 * layers)]
    example = (torch.zeros((2, 3), dtype=torch.long), *[torch.zeros((2, kv, 2, hd))] * len(names))
    shapes = [ov.PartialShape([-1, -1])] + [ov.PartialShape([-1, kv, -1, hd])] * len(names)
    ovm = ov.convert_model(FlatKV(m), example_input=example, input=shapes)
    for port, name in zip(ovm.inputs, ["input_ids", *names]):
        port.get_tensor().set_names({name})
    for i, port in enumerate(ovm.outputs):
        port.get_tensor().set_names({f"present_{i - 1}" if i else "logits"})
    beam = op.parameter([-1], ov.Type.i32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    ovm.add_parameters([beam])
    for name in names:  # the cache's rows reordered by beam_idx: the pattern the CPU plugin's fusion expects
        port = ovm.input(name)
        consumers = port.get_target_inputs()
        gathered = op.gather(port, beam, op.constant(0))
        for c in consumers:
            c.replace_source_output(gathered.output(0))
    apply_make_stateful_transformation(ovm, {n: f"present_{i}" for i, n in enumerate(names)})
    batch = op.gather(op.shape_of(ovm.input("input_ids"), output_type="i64"), op.constant([0]), op.constant(0))
    empty = op.broadcast(op.constant(0.0, ov.Type.f32), op.concat([batch, op.constant(np.array([kv, 0, hd]))], 0))
    for node in ovm.get_ops():
        if node.get_type_name() == "ReadValue":
            node.set_arguments([empty])
    ovm.validate_nodes_and_infer_types()
    return ovm


def compress(ov_model, qplan: QuantPlan, group_size: int, symmetric: bool = True, ratio: float = 1.0):
    import nncf

    if qplan.method == "nncf-int8-weights":
        return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    if qplan.method == "nncf-int4-weights":  # a layer whose width the group does not divide keeps its weights
        from nncf.quantization.advanced_parameters import AdvancedCompressionParameters

        keep = AdvancedCompressionParameters(group_size_fallback_mode=nncf.GroupSizeFallbackMode.IGNORE)
        return nncf.compress_weights(
            ov_model,
            mode=nncf.CompressWeightsMode.INT4_SYM if symmetric else nncf.CompressWeightsMode.INT4_ASYM,
            group_size=group_size,
            ratio=ratio,
            advanced_parameters=keep,
        )
    return ov_model


@dataclass
class _Cycle:
    """The timed step's state: the prompt's cache to go back to, and how many tokens were appended to it."""

    token: np.ndarray
    beam: np.ndarray
    prompt_cache: list[np.ndarray]
    steps: int = 0


def openvino_lm_runner(model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
    import openvino as ov

    with library_step("convert", "openvino"):
        ov_model = stateful_model(model)
    with library_step("quantize", "nncf"):
        ov_model = compress(ov_model, qplan, ctx.group_size, ctx.symmetric, ctx.int4_ratio)
    if ctx.kv_cache != "auto":
        ov_model.set_rt_info(ctx.kv_cache, ["runtime_options", "KV_CACHE_PRECISION"])
    config = {"INFERENCE_PRECISION_HINT": HINT[ctx.precision], "INFERENCE_NUM_THREADS": ctx.threads,
              "PERFORMANCE_HINT": "LATENCY"}  # fmt: skip
    with library_step("compile", "openvino"):
        compiled = ov.Core().compile_model(ov_model, "CPU", config)
    xml = ctx.workdir / "model.xml"
    ov.save_model(ov_model, xml, compress_to_fp16=False)

    def save(target: Path) -> Saved:
        target.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, target / "model.xml", compress_to_fp16=False)
        model.config.save_pretrained(target)
        return Saved(OPENVINO_CAUSAL_LM.name, [target / "model.xml", target / "model.bin", target / "config.json"])

    settings = {"engine": "openvino", "version": ov.__version__, "precision_hint": HINT[ctx.precision],
                "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
                "kv_cache": "stateful", "kv_cache_precision": compiled.get_property("KV_CACHE_PRECISION").to_string(),
                "quantized": qplan.method, "threads": ctx.threads}  # fmt: skip
    if qplan.method == "nncf-int4-weights":
        settings["int4_ratio"] = ctx.int4_ratio
    return stateful_runner(compiled, gen, file_mb(xml, xml.with_suffix(".bin")), save, settings)


def stateful_runner(compiled: Any, gen: GenConfig, size_mb: float, save, settings: dict[str, Any]) -> Runner:
    """One infer request; a whole-sequence call (prefill, perplexity) starts from an empty cache."""
    import openvino as ov

    request, states, logits = compiled.create_infer_request(), [], compiled.output("logits")
    owner: list[_Cycle | None] = [None]  # whose cache the request holds now

    def infer(ids: np.ndarray) -> np.ndarray:
        out = request.infer({"input_ids": ids, "beam_idx": np.arange(len(ids), dtype=np.int32)})
        return np.array(out[logits], copy=True)  # the request's buffers are reused

    def sequence(ids: np.ndarray) -> np.ndarray:
        request.reset_state()
        owner[0] = None
        return infer(np.ascontiguousarray(ids.astype(np.int64)))

    def prepare(x: torch.Tensor) -> _Cycle:
        ids = context_ids(x, gen.prompt_tokens + 1).numpy()
        sequence(ids[:, : gen.prompt_tokens])
        states[:] = request.query_state()
        token = np.ascontiguousarray(ids[:, gen.prompt_tokens :].astype(np.int64))
        cached = [np.array(s.state.data, copy=True) for s in states]
        return _Cycle(token, np.arange(len(ids), dtype=np.int32), cached)

    def run(c: _Cycle) -> np.ndarray:
        if owner[0] is not c or c.steps == gen.new_tokens:  # back to the prompt's cache
            for s, cached in zip(states, c.prompt_cache):
                s.state = ov.Tensor(cached)
            owner[0], c.steps = c, 0
        c.steps += 1
        return np.array(request.infer({"input_ids": c.token, "beam_idx": c.beam})[logits], copy=True)

    return Runner(
        prepare=prepare,
        run=run,
        to_torch=lambda y: torch.from_numpy(np.array(y)),
        size_mb=size_mb,
        save=save,
        settings=settings,
        forward=lambda ids: torch.from_numpy(sequence(ids.numpy())),
        prefill=lambda x: sequence(x[:, : gen.prompt_tokens].numpy())[:, -1],
    )
