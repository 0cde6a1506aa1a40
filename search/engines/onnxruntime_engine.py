"""ONNX Runtime: int8 by its own quantizers: ``quantize_static`` (QDQ, per-channel, calibrated on training
data) or ``quantize_dynamic`` (int8 MatMul weights, activations per batch: the CPU path for transformer
encoders, as Hugging Face optimum takes it). A transformer's graph first goes through ONNX Runtime's
transformer optimizer (LayerNorm, GELU, attention fusions where the patterns match)."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
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
from infersearch.engines.decode_onnx import onnx_lm_runner, plan_onnx_lm
from infersearch.engines.onnx_export import export_onnx
from infersearch.passes.architecture import is_transformer
from infersearch.passes.quantize import QuantPlan


def _serve(model_dir: Path, manifest: dict[str, Any], threads: int) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # no busy-waiting between runs: a spinning pool takes the cores the event loop needs to answer
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


ONNX = register_format(
    ArtifactFormat(
        "onnx",
        "import numpy as np, onnxruntime as ort\n"
        "session = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])\n"
        "y = session.run(None, {'input': x.astype(np.float32)})[0]",
        _serve,
    )
)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a tensor of inputs."""

    def __init__(self, x: torch.Tensor, batch: int = 32) -> None:
        self._batches = iter([{"input": x[i : i + batch].numpy()} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._batches, None)


def _transformer_fusions(path: Path, target: Path) -> tuple[Path, dict[str, int]]:
    """ONNX Runtime's transformer optimizer; returns the fused graph and what it fused."""
    from onnxruntime.transformers.optimizer import optimize_model

    # its modules log under their bare names ("fusion_skiplayernorm"), one INFO line per fusion and trial
    with _root_warnings_off():
        optimized = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0)
        optimized.save_model_to_file(str(target))
    return target, {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def _quantize_dynamic(path: Path, target: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the fused contrib ops carry no type information: say the unknown ones are float
    with _root_warnings_off():  # "Please consider to run pre-processing": static quantization's advice
        quantize_dynamic(
            str(path),
            str(target),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return target


def _quantize_static(path: Path, workdir: Path, calibration: torch.Tensor, skip_symbolic: bool) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared, target = workdir / "model.prep.onnx", workdir / "model.int8.onnx"
    # shape inference + graph cleanup, as ORT advises; its symbolic shape inference fails on attention's
    # reshapes (a bare AssertionError), where ONNX's own shape inference does the job
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=skip_symbolic)
    with _root_warnings_off():  # "Axis 1 is out-of-range for weight ...": LayerNorm weights stay per-tensor
        quantize_static(
            str(prepared),
            str(target),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return target


@contextlib.contextmanager
def _root_warnings_off() -> Iterator[None]:
    """ONNX Runtime's quantizer and optimizer log through the root logger (or bare module names), once per
    weight or fusion and trial."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


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
        if bits != 8:
            raise UnsupportedError("quant.bits", f"{bits} on onnxruntime: allowed 32, 8")
        if scheme in ("auto", "static"):
            return QuantPlan(8, "onnxruntime-quantize_static-qdq-int8", "real")
        if scheme == "dynamic":
            return QuantPlan(8, "onnxruntime-quantize_dynamic-int8", "real")
        raise UnsupportedError(
            "quant.scheme",
            f"{scheme} on onnxruntime: allowed static, dynamic (int8 weight_only runs on engine=openvino)",
        )

    def plan_lm(self, bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
        self.require()
        return plan_onnx_lm(bits, caps, precision, scheme)

    def build_lm(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
        return onnx_lm_runner(model, qplan, ctx, gen)

    def providers(self, device: str) -> list[str]:
        import onnxruntime as ort

        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        import onnxruntime as ort

        with self.step("export"):
            path = export_onnx(model, ctx.calibration[:1], ctx.workdir / "model.onnx")
        # its INFO lines ("Performing symbolic shape inference...") would print once per trial
        logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
        fused: dict[str, int] = {}
        transformer = is_transformer(model)
        if transformer and qplan.method != "onnxruntime-quantize_static-qdq-int8":
            with self.step("optimize"):  # QDQ calibration cannot read the fused contrib ops: static skips it
                path, fused = _transformer_fusions(path, ctx.workdir / "model.opt.onnx")
        if qplan.method == "onnxruntime-quantize_dynamic-int8":
            with self.step("quantize"):
                path = _quantize_dynamic(path, ctx.workdir / "model.int8.onnx")
        elif qplan.bits == 8:
            with self.step("quantize"):
                path = _quantize_static(path, ctx.workdir, ctx.calibration, skip_symbolic=transformer)
        options = ort.SessionOptions()
        options.intra_op_num_threads = ctx.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = self.providers(ctx.device)
        with self.step("compile"):
            session = ort.InferenceSession(str(path), options, providers=providers)

        def save(target: Path) -> Saved:
            target.mkdir(parents=True, exist_ok=True)
            return Saved(ONNX.name, [Path(shutil.copy2(path, target / "model.onnx"))])

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
                "transformer_fusions": fused,
                "format": ONNX.name,
            },
        )
