"""The one place that knows what the current device can run.

Every pass asks this module (not ``torch.cuda`` directly) whether a precision
or an integer kernel is available, so a combination that cannot run is
refused before any work starts.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
from dataclasses import dataclass, field

import torch

from infersearch.core.errors import UnsupportedError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32}


@dataclass(frozen=True)
class Capabilities:
    device: str  # "cpu" | "cuda"
    name: str
    precisions: tuple[str, ...]
    int8_kernel: bool  # real int8 conv/linear kernels exist
    int4_kernel: bool  # real int4 weight-only kernels exist
    float8_kernel: bool = False  # real float8 matmuls exist (sm_89 and newer, with torchao)
    notes: dict = field(default_factory=dict)

    def check_precision(self, precision: str, memory_bound: bool = False) -> None:
        """``memory_bound`` (a language model's decode): a precision without native instructions is still
        allowed, since halving the bytes read outweighs the conversion there (measured: bf16 1.2-1.8x)."""
        if precision in self.notes.get("not_native", ()) and not memory_bound:
            flags = " or ".join(_NATIVE[precision])
            raise UnsupportedError(
                "precision",
                f"{precision} on cpu: {self.name} has no native {precision} instructions ({flags}), so it would "
                "run converted, slower than fp32; use precision=fp32",
            )
        if precision not in self.precisions:
            raise UnsupportedError(
                "precision",
                f"{precision!r} cannot run on {self.device} ({self.name}); allowed here: {', '.join(self.precisions)}",
            )


def resolve(choice: str) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("device", "cuda was asked for but torch sees no CUDA device; use cpu or auto")
    if choice not in ("cpu", "cuda"):
        raise UnsupportedError("device", f"{choice!r} is not one of auto, cpu, cuda")
    return choice


@functools.cache
def capabilities(device: str) -> Capabilities:
    if device == "cuda":
        return _cuda_capabilities()
    return _cpu_capabilities()


def _runs(dtype: torch.dtype, device: str) -> bool:
    """Probe with a real conv + linear: a dtype is supported when its kernels run."""
    try:
        with torch.no_grad():
            x = torch.ones(1, 2, 4, 4, dtype=dtype, device=device)
            conv = torch.nn.Conv2d(2, 2, 3).to(device=device, dtype=dtype)
            lin = torch.nn.Linear(2, 2).to(device=device, dtype=dtype)
            lin(conv(x).mean(dim=(2, 3)))
        return True
    except (RuntimeError, NotImplementedError):
        return False


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# A CPU without these converts every bf16/fp16 op to fp32 and back: it runs, slower than fp32.
_NATIVE = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def _cpu_capabilities() -> Capabilities:
    flags = _cpu_flags()
    native = [p for p in ("fp32", "bf16", "fp16") if p == "fp32" or flags & set(_NATIVE[p])]
    precisions = tuple(p for p in native if _runs(DTYPES[p], "cpu"))
    engines = torch.backends.quantized.supported_engines
    return Capabilities(
        device="cpu",
        name=_cpu_name(),
        precisions=precisions,
        int8_kernel=any(e in engines for e in ("x86", "fbgemm", "onednn")),
        int4_kernel=False,
        notes={
            "quantized_engines": list(engines),
            "cpu_count": os.cpu_count(),
            "not_native": [p for p in ("bf16", "fp16") if p not in native],
        },
    )


def _cuda_capabilities() -> Capabilities:
    major, minor = torch.cuda.get_device_capability()
    precisions = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    precisions += ["tf32"] if major >= 8 else []
    has_torchao = importlib.util.find_spec("torchao") is not None
    return Capabilities(
        device="cuda",
        name=torch.cuda.get_device_name(),
        precisions=tuple(precisions),
        int8_kernel=has_torchao,
        int4_kernel=has_torchao and major >= 8,
        float8_kernel=has_torchao and (major, minor) >= (8, 9),
        notes={
            "compute_capability": f"{major}.{minor}",
            "torchao": has_torchao,
            "cuda": torch.version.cuda,
            **_gpu_clocks(),
        },
    )


def _gpu_clocks() -> dict:
    """SM clock and driver, recorded with every GPU trial (through NVML, when torch can reach it)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        return {
            "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "max_sm_clock_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "driver": pynvml.nvmlSystemGetDriverVersion(),
        }
    except Exception:  # noqa: BLE001 - NVML missing or not permitted: the clocks are simply not recorded
        return {}


def set_tf32(device: str, precision: str) -> bool:
    """TF32 on only when asked for (precision=tf32): never silently under fp32. Returns the setting."""
    enabled = device == "cuda" and precision == "tf32"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
    return enabled
