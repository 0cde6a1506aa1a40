"""Numeric precision of the float parts of the model."""

from __future__ import annotations

from infersearch.device import DTYPES
from torch import nn


def set_precision(model: nn.Module, precision: str, device: str) -> nn.Module:
    return model.to(device=device, dtype=DTYPES[precision])
