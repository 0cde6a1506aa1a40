"""OpenVINO on CPU: int8 by NNCF's post-training quantization; the inference
precision hint is set explicitly and recorded (OpenVINO's own default is not fp32)."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infersearch.device import Capabilities
from infersearch.engines.base import BuildContext, Engine, Runner, file_mb
from infersearch.errors import UnsupportedError
from infersearch.passes.quantize import QuantPlan

_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}


@functools.lru_cache(maxsize=1)
def _cpu_capabilities() -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


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
        if scheme != "auto":
            raise UnsupportedError("quant.scheme", f"{scheme} on openvino: NNCF quantizes statically (scheme=auto)")
        if bits == 8:
            try:
                import nncf  # noqa: F401
            except ImportError as exc:
                raise UnsupportedError(
                    "quant.bits", "8 on openvino needs nncf: pip install 'infersearch[openvino]'"
                ) from exc
            return QuantPlan(8, "nncf-quantize-int8", "real")
        raise UnsupportedError("quant.bits", f"{bits} on openvino: allowed 32, 8")

    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        import openvino as ov

        with self.step("convert"):
            ov_model = ov.convert_model(model.float().cpu().eval(), example_input=ctx.calibration[:1])
            ov_model.reshape({0: ov.PartialShape([-1, *ctx.calibration.shape[1:]])})
        if qplan.bits == 8:
            import nncf

            nncf.set_log_level(logging.ERROR)
            batches = [ctx.calibration[i : i + 1].numpy() for i in range(len(ctx.calibration))]
            # its progress bars would cut into the trial lines
            with self.step("quantize"), contextlib.redirect_stdout(io.StringIO()):
                ov_model = nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=len(batches))
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

        def save(target: Path) -> list[Path]:
            target.mkdir(parents=True, exist_ok=True)
            ov.save_model(ov_model, target / "model.xml", compress_to_fp16=False)
            return [target / "model.xml", target / "model.bin"]

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
                "format": "openvino-ir",
            },
        )
