"""Language models on OpenVINO: the same flat-KV ONNX export as ONNX Runtime's (decode_onnx.py), read by
OpenVINO, weights compressed by NNCF (``nncf.compress_weights``: int8 asymmetric per channel, or int4
symmetric (``quant.symmetric``, else with zero points) in groups of ``quant.group_size``; a layer whose
width the group does not divide is left as it is, as torchao does; NNCF's defaults otherwise: the
embeddings and the last layer stay int8), compiled for the CPU with an explicit inference precision (fp32,
or bf16 where the CPU has it) and run with the cache fed back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from infersearch.config import GenConfig
from infersearch.core.device import Capabilities
from infersearch.core.errors import UnsupportedError, library_step
from infersearch.engines.base import ArtifactFormat, BuildContext, Runner, Saved, file_mb, register_format
from infersearch.engines.decode_onnx import export, flat_kv_runner
from infersearch.passes.quantize import QuantPlan

HINT = {"fp32": "f32", "bf16": "bf16"}
OPENVINO_CAUSAL_LM = register_format(
    ArtifactFormat(
        "openvino-causal-lm",
        "import numpy as np, openvino as ov, json\nfrom tokenizers import Tokenizer\n"
        "c, tok = json.load(open('config.json')), Tokenizer.from_file('tokenizer.json')\n"
        "compiled = ov.Core().compile_model('model.xml', 'CPU', {'INFERENCE_PRECISION_HINT': $hint})\n"
        "kv, hd = c['num_key_value_heads'], c.get('head_dim') or c['hidden_size'] // c['num_attention_heads']\n"
        "past = {f'past_{i}': np.zeros((1, kv, 0, hd), np.float32) for i in range(2 * c['num_hidden_layers'])}\n"
        "ids = np.array([tok.encode(text).ids], np.int64)\n"
        "for _ in range(32):  # greedy, the KV cache fed back\n"
        "    logits, *present = compiled({'input_ids': ids[:, -1:] if _ else ids, **past}).values()\n"
        "    past = dict(zip(past, present))\n"
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


def compress(ov_model, qplan: QuantPlan, group_size: int, symmetric: bool = True):
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
            advanced_parameters=keep,
        )
    return ov_model


def openvino_lm_runner(model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
    import openvino as ov

    core = ov.Core()
    with library_step("convert", "openvino"):
        ov_model = core.read_model(str(export(model, ctx.workdir / "model.onnx")))
    with library_step("quantize", "nncf"):
        ov_model = compress(ov_model, qplan, ctx.group_size, ctx.symmetric)
    config = {"INFERENCE_PRECISION_HINT": HINT[ctx.precision], "INFERENCE_NUM_THREADS": ctx.threads,
              "PERFORMANCE_HINT": "LATENCY"}  # fmt: skip
    with library_step("compile", "openvino"):
        compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    xml = ctx.workdir / "model.xml"
    ov.save_model(ov_model, xml, compress_to_fp16=False)

    def call(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = request.infer(feed)
        return [np.array(out[o], copy=True) for o in compiled.outputs]  # the request's buffers are reused

    def save(target: Path) -> Saved:
        target.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, target / "model.xml", compress_to_fp16=False)
        model.config.save_pretrained(target)
        return Saved(OPENVINO_CAUSAL_LM.name, [target / "model.xml", target / "model.bin", target / "config.json"])

    settings = {"engine": "openvino", "version": ov.__version__, "precision_hint": HINT[ctx.precision],
                "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
                "kv_cache": "explicit", "quantized": qplan.method, "threads": ctx.threads}  # fmt: skip
    return flat_kv_runner(model, gen, call, file_mb(xml, xml.with_suffix(".bin")), save, settings)
