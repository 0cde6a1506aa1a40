"""Numeric precision of the float parts of the model."""

from __future__ import annotations

from torch import nn

from infersearch.core.device import DTYPES


def set_precision(model: nn.Module, precision: str, device: str) -> nn.Module:
    return model.to(device=device, dtype=DTYPES[precision])
