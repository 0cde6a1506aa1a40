"""Integer quantization, behind one module so the backend can move.

CPU int8 uses torch's x86 static quantization (FX graph mode: conv, linear,
residual adds and activations all on quantized kernels, calibrated on
training data), or with ``quant.scheme=dynamic`` its dynamic quantization of
Linear layers (the transformer path). ``torch.ao.quantization`` is deprecated in favour of
torchao's pt2e flow, whose CPU int8 kernels only appear after
``torch.compile`` lowering; moving means replacing ``_x86_static_int8`` here.
CUDA int8/int4 use torchao's weight quantizers. Widths without a fast kernel
on the device run as weight fake-quant and are labelled ``emulated``.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from infersearch.core.device import Capabilities
from infersearch.core.errors import UnsupportedError


@dataclass(frozen=True)
class QuantPlan:
    bits: int
    method: str
    kernel: str  # "real" | "emulated" | "none"

    @property
    def emulated(self) -> bool:
        return self.kernel == "emulated"


def plan(bits: int, caps: Capabilities, precision: str, scheme: str = "auto") -> QuantPlan:
    """Decide how ``bits`` (and ``scheme``) run on this device, or refuse before any work starts."""
    if bits == 32:
        return QuantPlan(32, "none", "none")
    if caps.device == "cpu":
        return _plan_cpu(bits, caps, precision, scheme)
    return _plan_cuda(bits, caps, precision, scheme)


def _plan_cpu(bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
    if bits != 8:
        if scheme != "auto":
            raise UnsupportedError("quant.scheme", f"{scheme} with quant.bits={bits} on cpu: only 8-bit has schemes")
        return QuantPlan(bits, f"fake-quant-int{bits}-weights", "emulated")
    if not caps.int8_kernel:
        raise UnsupportedError("quant.bits", "8 needs torch's x86/fbgemm quantized engine, absent here")
    if precision != "fp32":
        raise UnsupportedError(
            "precision", f"{precision} with quant.bits=8 on cpu: int8 kernels take fp32 input; use precision=fp32"
        )
    if scheme in ("auto", "static"):
        return QuantPlan(8, "torch-x86-static-int8", "real")
    if scheme == "dynamic":
        return QuantPlan(8, "torch-dynamic-int8-linear", "real")
    raise UnsupportedError(
        "quant.scheme", f"{scheme} on cpu with torch: allowed static, dynamic (weight_only runs on engine=openvino)"
    )


def _plan_cuda(bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
    if scheme == "float8":
        if bits != 8 or not caps.float8_kernel:
            raise UnsupportedError(
                "quant.scheme", f"float8 needs quant.bits=8 and an sm_89+ GPU with torchao ({caps.name})"
            )
        return QuantPlan(8, "torchao-float8-dynamic", "real")
    if bits == 8 and caps.int8_kernel:
        if scheme == "weight_only":
            return QuantPlan(8, "torchao-int8-weight-only", "real")
        return QuantPlan(8, "torchao-int8-dynamic-act-int8-weight", "real")
    if bits == 4 and caps.int4_kernel:
        if precision != "bf16":
            raise UnsupportedError("precision", "quant.bits=4 on cuda runs torchao's int4 kernel in bf16; use bf16")
        return QuantPlan(4, "torchao-int4-weight-only", "real")
    return QuantPlan(bits, f"fake-quant-int{bits}-weights", "emulated")


def quantize(model: nn.Module, qplan: QuantPlan, calibration: torch.Tensor) -> nn.Module:
    """Return a quantized copy; ``calibration`` is a batch of training inputs."""
    if qplan.method == "none":
        return model
    fn = _METHODS.get(qplan.method.split("-int")[0] if qplan.method.startswith("fake") else qplan.method)
    if fn is None:
        raise UnsupportedError("quant.bits", f"no method {qplan.method!r}")
    return fn(copy.deepcopy(model).eval(), qplan, calibration)


def _x86_static_int8(model: nn.Module, qplan: QuantPlan, calibration: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (calibration[:1],))
        with torch.no_grad():
            for start in range(0, len(calibration), 64):
                prepared(calibration[start : start + 64])
        return convert_fx(prepared)


def _dynamic_int8(model: nn.Module, qplan: QuantPlan, calibration: torch.Tensor) -> nn.Module:
    """int8 Linear weights, activations quantized per batch at run time: nothing to calibrate, and
    LayerNorm, softmax and GELU stay in float, which is why transformers keep their accuracy."""
    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)  # torch.ao's own deprecation notice
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def _torchao(model: nn.Module, qplan: QuantPlan, calibration: torch.Tensor) -> nn.Module:
    """torchao's quantize_ swaps nn.Linear weights for quantized tensors with CUDA kernels;
    convolutions stay in the float precision (recorded by the method name)."""
    import torchao.quantization as tq

    configs = {
        "torchao-int8-dynamic-act-int8-weight": lambda: tq.Int8DynamicActivationInt8WeightConfig(),
        "torchao-int8-weight-only": lambda: tq.Int8WeightOnlyConfig(),
        "torchao-int4-weight-only": lambda: tq.Int4WeightOnlyConfig(group_size=32),
        "torchao-float8-dynamic": lambda: tq.Float8DynamicActivationFloat8WeightConfig(),
    }
    tq.quantize_(model, configs[qplan.method]())
    return model


def quantize_lm(model: nn.Module, qplan: QuantPlan, group_size: int) -> nn.Module:
    """A language model's Linear weights to torchao's weight-only int8 (per row) or int4 (per ``group_size``,
    CPU: the packed opaque layout), in place; activations stay in the model's precision. A Linear whose
    input width the group does not divide keeps its float weights (torchao skips it)."""
    if qplan.method == "none":
        return model
    import torchao.quantization as tq

    if qplan.method == "torchao-int8-weight-only":
        config = tq.Int8WeightOnlyConfig()
    elif qplan.method == "torchao-int4-weight-only-cpu":
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        config = PrototypeInt4WeightOnlyConfig(group_size=group_size)
    else:
        config = tq.Int4WeightOnlyConfig(group_size=group_size)
    tq.quantize_(model, config)
    return model


@torch.no_grad()
def _fake_quant(model: nn.Module, qplan: QuantPlan, calibration: torch.Tensor) -> nn.Module:
    """Round conv/linear weights to a symmetric per-output-channel grid of ``bits``."""
    qmax = 2 ** (qplan.bits - 1) - 1
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            w = m.weight
            scale = w.abs().reshape(w.shape[0], -1).amax(dim=1).clamp(min=1e-12) / qmax
            scale = scale.reshape(-1, *([1] * (w.dim() - 1)))
            w.copy_((w / scale).round().clamp(-qmax - 1, qmax) * scale)
    return model


_METHODS = {
    "torch-x86-static-int8": _x86_static_int8,
    "torch-dynamic-int8-linear": _dynamic_int8,
    "torchao-int8-dynamic-act-int8-weight": _torchao,
    "torchao-int4-weight-only": _torchao,
    "torchao-int8-weight-only": _torchao,
    "torchao-float8-dynamic": _torchao,
    "fake-quant": _fake_quant,
}


def is_quantized_module(m: nn.Module) -> bool:
    return type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))
