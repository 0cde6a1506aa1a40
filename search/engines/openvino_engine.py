"""OpenVINO on CPU: int8 by NNCF: post-training quantization (static; with its transformer model type on
a transformer) or weight compression (weight_only). The model converts from ``torch.export``, not
tracing: tracing cannot follow ``nn.TransformerEncoder``'s fused fast path. The inference precision
hint is set explicitly and recorded (OpenVINO's own default is not fp32)."""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from infersearch.config import GenConfig
from infersearch.core.device import Capabilities
from infersearch.core.errors import UnsupportedError
from infersearch.engines.base import (
    ArtifactFormat,
    BuildContext,
    Engine,
    Predict,
    Runner,
    Saved,
    file_mb,
    register_format,
)
from infersearch.engines.decode_openvino import openvino_lm_runner, plan_openvino_lm
from infersearch.passes.architecture import is_transformer
from infersearch.passes.quantize import QuantPlan

_METHOD = {"auto": "nncf-quantize-int8", "static": "nncf-quantize-int8", "weight_only": "nncf-compress-weights-int8"}
_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}


def _serve(model_dir: Path, manifest: dict[str, Any], threads: int) -> Predict:
    import openvino as ov

    hint = (manifest.get("env") or {}).get("engine", {}).get("precision_hint", "f32")
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(str(model_dir / "model.xml"), "CPU", config)
    # one infer request per call: requests are not shared between the serving threads
    return lambda x: np.array(compiled.create_infer_request().infer({0: x})[0], copy=True)


OPENVINO_IR = register_format(
    ArtifactFormat(
        "openvino-ir",
        "import openvino as ov\n"
        "compiled = ov.Core().compile_model('model.xml', 'CPU', {'INFERENCE_PRECISION_HINT': $hint})\n"
        "y = compiled(x)[0]",
        _serve,
    )
)


@functools.lru_cache(maxsize=1)
def _cpu_capabilities() -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def convert(model: nn.Module, example: torch.Tensor):
    """From an ExportedProgram with a dynamic batch (an example of two samples: one would specialise it)."""
    import openvino as ov

    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():  # torch's own deprecations inside export and the copy the converter makes
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        return ov.convert_model(program)


def _nncf(ov_model, qplan: QuantPlan, calibration: torch.Tensor, transformer: bool):
    import nncf

    nncf.set_log_level(logging.ERROR)
    if qplan.method == "nncf-compress-weights-int8":
        return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    batches = [calibration[i : i + 1].numpy() for i in range(len(calibration))]
    if not transformer:
        return nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=len(batches))
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    # The transformer type keeps LayerNorm, softmax and GELU in float. The SmoothQuant it adds by default
    # took the zoo transformer from 92.5% to 38% on validation (91.4% without it): off.
    no_smoothing = AdvancedSmoothQuantParameters(matmul=-1, convolution=-1)
    return nncf.quantize(
        ov_model,
        nncf.Dataset(batches),
        subset_size=len(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alphas=no_smoothing),
    )


class OpenVinoEngine(Engine):
    name = "openvino"
    package = "openvino"
    extra = "openvino"

    def plan(self, bits: int, caps: Capabilities, precision: str, scheme: str = "auto") -> QuantPlan:
        self.require()
        if caps.device != "cpu":
            raise UnsupportedError("engine", "openvino runs on the CPU here; use device=cpu")
        have = _cpu_capabilities()
        if _CAPABILITY.get(precision) not in have:
            raise UnsupportedError("precision", f"{precision} on openvino: this CPU offers {', '.join(have)}")
        if bits == 32:
            return QuantPlan(32, "none", "none")
        if bits != 8:
            raise UnsupportedError("quant.bits", f"{bits} on openvino: allowed 32, 8")
        if scheme not in _METHOD:
            raise UnsupportedError(
                "quant.scheme",
                f"{scheme} on openvino: allowed static, weight_only (dynamic runs on torch, onnxruntime)",
            )
        try:
            import nncf  # noqa: F401
        except ImportError as exc:
            raise UnsupportedError(
                "quant.bits", "8 on openvino needs nncf: pip install 'infersearch[openvino]'"
            ) from exc
        return QuantPlan(8, _METHOD[scheme], "real")

    def plan_lm(self, bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
        self.require()
        return plan_openvino_lm(bits, caps, precision, scheme)

    def build_lm(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
        return openvino_lm_runner(model, qplan, ctx, gen)

    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        import openvino as ov

        with self.step("convert"):
            ov_model = convert(model.float().cpu().eval(), ctx.calibration[:2])
        if qplan.bits == 8:
            with self.step("quantize"):
                ov_model = _nncf(ov_model, qplan, ctx.calibration, is_transformer(model))
        config = {
            "INFERENCE_PRECISION_HINT": _HINT[ctx.precision],
            "INFERENCE_NUM_THREADS": ctx.threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        with self.step("compile"):
            compiled = ov.Core().compile_model(ov_model, "CPU", config)
        request = compiled.create_infer_request()
        xml = ctx.workdir / "model.xml"
        ov.save_model(ov_model, xml, compress_to_fp16=False)

        def run(x: np.ndarray) -> np.ndarray:
            return request.infer({0: x})[0]

        def save(target: Path) -> Saved:
            target.mkdir(parents=True, exist_ok=True)
            ov.save_model(ov_model, target / "model.xml", compress_to_fp16=False)
            return Saved(OPENVINO_IR.name, [target / "model.xml", target / "model.bin"])

        return Runner(
            prepare=lambda x: np.ascontiguousarray(x.float().cpu().numpy()),
            run=run,
            to_torch=lambda y: torch.from_numpy(np.array(y, copy=True)),
            size_mb=file_mb(xml, xml.with_suffix(".bin")),
            save=save,
            settings={
                "engine": self.name,
                "version": ov.__version__,
                "precision_hint": _HINT[ctx.precision],
                "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
                "threads": ctx.threads,
                "performance_hint": "LATENCY",
                "format": OPENVINO_IR.name,
            },
        )
