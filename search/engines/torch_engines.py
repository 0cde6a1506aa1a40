"""PyTorch eager and torch.compile (inductor): quantization by torch's own quantizer; a language model through
engines/decode.py (torchao's weight-only kernels). Saved as a torch ExportedProgram, or TorchScript."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from infersearch.config import GenConfig
from infersearch.core.device import DTYPES, Capabilities
from infersearch.core.errors import UnsupportedError
from infersearch.engines.base import ArtifactFormat, BuildContext, Engine, Predict, Runner, Saved, register_format
from infersearch.engines.decode import lm_runner, plan_torch_lm
from infersearch.measure.footprint import serialized_mb
from infersearch.passes.precision import set_precision
from infersearch.passes.quantize import QuantPlan, plan, quantize


def _serve(load: Callable[[Path], nn.Module], file: str) -> Callable[[Path, dict[str, Any], int], Predict]:
    """Serving a saved torch module: ``load`` reads ``file`` of the model folder."""

    def serve(model_dir: Path, manifest: dict[str, Any], threads: int) -> Predict:
        torch.set_num_threads(threads)
        module = load(model_dir / file)

        @torch.no_grad()
        def predict(x: np.ndarray) -> np.ndarray:
            return module(torch.from_numpy(x)).float().numpy()

        return predict

    return serve


TORCH_EXPORT = register_format(
    ArtifactFormat(
        "torch-export",
        "import torch\nmodel = torch.export.load('model.pt2').module()\ny = model(x)",
        _serve(lambda f: torch.export.load(str(f)).module(), "model.pt2"),
    )
)
TORCHSCRIPT = register_format(
    ArtifactFormat(
        "torchscript",
        "import torch\nmodel = torch.jit.load('model.torchscript.pt')\ny = model(x)",
        _serve(lambda f: torch.jit.load(str(f)), "model.torchscript.pt"),
    )
)


def _save_exported(module: nn.Module, example: torch.Tensor, path: Path) -> Saved:
    """A torch ExportedProgram (``torch.export.load(f).module()``); torch.ao's quantized
    modules do not export, so those are saved as TorchScript (``torch.jit.load(f)``)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, path / "model.pt2")
        return Saved(TORCH_EXPORT.name, [path / "model.pt2"])
    except Exception:  # noqa: BLE001 - any export failure falls back to TorchScript
        with torch.no_grad():
            scripted = torch.jit.trace(module, example)
        torch.jit.save(scripted, path / "model.torchscript.pt")
        return Saved(TORCHSCRIPT.name, [path / "model.torchscript.pt"])


class EagerEngine(Engine):
    name = "eager"
    package = "torch"

    def plan(self, bits: int, caps: Capabilities, precision: str, scheme: str = "auto") -> QuantPlan:
        return plan(bits, caps, precision, scheme)

    def _module(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> nn.Module:
        dtype = DTYPES[ctx.precision]
        calibration = ctx.calibration.to(device=ctx.device, dtype=dtype)
        with self.step("quantize"):
            return quantize(set_precision(model, ctx.precision, ctx.device), qplan, calibration).eval()

    def _runner(self, module: nn.Module, ctx: BuildContext, settings: dict) -> Runner:
        dtype = DTYPES[ctx.precision]
        example = ctx.calibration[:2].to(device=ctx.device, dtype=dtype)
        return Runner(
            prepare=lambda x: x.to(device=ctx.device, dtype=dtype),
            run=module,
            to_torch=lambda y: y.float().cpu(),
            size_mb=serialized_mb(module),
            save=lambda path: _save_exported(module, example, path),
            settings={"engine": self.name, "version": torch.__version__, "precision": ctx.precision} | settings,
        )

    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        return self._runner(self._module(model, qplan, ctx), ctx, {})

    def plan_lm(self, bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
        return plan_torch_lm(bits, caps, precision, scheme)

    def build_lm(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
        return lm_runner(model, qplan, ctx, gen, None)


class CompileEngine(EagerEngine):
    """torch.compile with inductor. Compile time is recorded apart from steady-state
    latency; inductor's on-disk caches make a repeated compile cheaper."""

    name = "compile"

    def plan(self, bits: int, caps: Capabilities, precision: str, scheme: str = "auto") -> QuantPlan:
        if bits != 32:
            raise UnsupportedError(
                "engine",
                f"compile with quant.bits={bits}: inductor cannot trace torch.ao quantized modules; "
                "use engine=eager, onnxruntime or openvino for integer kernels",
            )
        return plan(bits, caps, precision, scheme)

    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        module = self._module(model, qplan, ctx)
        mode = self.options.get("mode", "default")
        compiled = torch.compile(module, mode=mode, dynamic=True)  # one graph for every batch size
        x = ctx.calibration[:1].to(device=ctx.device, dtype=DTYPES[ctx.precision])
        t0 = time.perf_counter()
        with self.step("compile"), torch.no_grad():
            compiled(x)
        compile_s = time.perf_counter() - t0
        runner = self._runner(module, ctx, {"compile_mode": mode, "compile_s": compile_s})
        runner.run = compiled
        return runner

    def build_lm(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
        """A static KV cache and the decode step compiled in ``compile.mode``."""
        return lm_runner(model, qplan, ctx, gen, self.options.get("mode", "default"))
