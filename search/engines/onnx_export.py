"""ONNX export shared by the engines that load ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int = 17) -> Path:
    """TorchScript-based exporter with a dynamic batch axis (fast, no onnxscript needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.float().cpu().eval(),
            (example.float().cpu(),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=opset,
        )
    return path
