"""ONNX Runtime: int8 by its own ``quantize_static`` (QDQ, per-channel, calibrated on training data)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infersearch.device import Capabilities
from infersearch.engines.base import BuildContext, Engine, Runner, file_mb
from infersearch.engines.onnx_export import export_onnx
from infersearch.errors import UnsupportedError
from infersearch.passes.quantize import QuantPlan


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a tensor of inputs."""

    def __init__(self, x: torch.Tensor, batch: int = 32) -> None:
        self._batches = iter([{"input": x[i : i + batch].numpy()} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._batches, None)


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    package = "onnxruntime"
    extra = None  # a core dependency: about 30 MB next to torch's several hundred

    def plan(self, bits: int, caps: Capabilities, precision: str, scheme: str = "auto") -> QuantPlan:
        self.require()
        if precision != "fp32":
            raise UnsupportedError(
                "precision", f"{precision} on onnxruntime: its CPU kernels run fp32 (and int8); use precision=fp32"
            )
        if bits == 32:
            return QuantPlan(32, "none", "none")
        if scheme != "auto":
            raise UnsupportedError("quant.scheme", f"{scheme} on onnxruntime: quantize_static is static (scheme=auto)")
        if bits == 8:
            return QuantPlan(8, "onnxruntime-quantize_static-qdq-int8", "real")
        raise UnsupportedError("quant.bits", f"{bits} on onnxruntime: allowed 32, 8")

    def providers(self, device: str) -> list[str]:
        import onnxruntime as ort

        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        import onnxruntime as ort

        with self.step("export"):
            path = export_onnx(model, ctx.calibration[:1], ctx.workdir / "model.onnx")
        if qplan.bits == 8:
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            # its INFO lines ("Performing symbolic shape inference...") would print once per trial
            logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
            prepared = ctx.workdir / "model.prep.onnx"
            quantized = ctx.workdir / "model.int8.onnx"
            with self.step("quantize"):
                quant_pre_process(str(path), str(prepared))  # shape inference + graph cleanup, as ORT advises
                quantize_static(
                    str(prepared),
                    str(quantized),
                    _Calibration(ctx.calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads = ctx.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = self.providers(ctx.device)
        with self.step("compile"):
            session = ort.InferenceSession(str(path), options, providers=providers)

        def save(target: Path) -> list[Path]:
            target.mkdir(parents=True, exist_ok=True)
            return [Path(shutil.copy2(path, target / "model.onnx"))]

        return Runner(
            prepare=lambda x: {"input": np.ascontiguousarray(x.float().cpu().numpy())},
            run=lambda feed: session.run(None, feed)[0],
            to_torch=torch.from_numpy,
            size_mb=file_mb(path),
            save=save,
            settings={
                "engine": self.name,
                "version": ort.__version__,
                "providers": providers,
                "intra_op_num_threads": ctx.threads,
                "graph_optimization_level": "ORT_ENABLE_ALL",
                "format": "onnx",
            },
        )
