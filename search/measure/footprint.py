"""Size on disk and peak memory of a built variant."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import torch
from torch import nn


def serialized_mb(model: nn.Module) -> float:
    """Bytes of the serialized optimized model (its state dict, packed int8 weights included)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 2**20


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) / 1024 if m else None
    except OSError:
        return None


@torch.no_grad()
def peak_memory_mb(run: Callable[[], object], device: str, model_mb: float) -> tuple[float | None, str]:
    """Peak memory of one inference call and how it was measured.

    CUDA: the allocator's peak. CPU (Linux): the process's resident high-water
    mark is reset through ``/proc/self/clear_refs`` and read after one call;
    its growth (activations, workspaces) plus the model's own bytes.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20, "cuda-allocator-peak"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None, "unavailable"
    before = _status_mb("VmRSS")
    run()
    peak = _status_mb("VmHWM")
    if before is None or peak is None:
        return None, "unavailable"
    return max(0.0, peak - before) + model_mb, "rss-high-water-growth+model"
