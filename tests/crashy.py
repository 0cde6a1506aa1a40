"""A user model that really segfaults when asked to (ctypes reads address 0), for the crash tests; with
``spectrum``, its first step is ``torch.fft.rfft``, which ONNX's TorchScript exporter has no symbolic for (a
real library failure on engine=onnxruntime, eager PyTorch runs it)."""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from infersearch.models import Task
from infersearch.models.data import split_arrays, to_splits
from infersearch.models.task import ACCURACY, TrainRecipe


class Crashy(nn.Module):
    def __init__(self, crash: bool, spectrum: bool = False) -> None:
        super().__init__()
        self.crash, self.spectrum = crash, spectrum
        self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        if self.crash and not self.training:
            ctypes.string_at(0)  # SIGSEGV in native code, like a crashing engine kernel
        if self.spectrum:
            x = torch.fft.rfft(x, dim=-1).abs()  # 2 features -> 2 frequency bins
        return self.net(x)


def task(crash: bool = False, seed: int = 0, spectrum: bool = False) -> Task:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(400, 2, generator=gen) * 2 - 1
    y = (x[:, 0] > x[:, 1]).long()
    return Task(
        name="crashy",
        build=lambda: Crashy(crash, spectrum),
        splits=to_splits(split_arrays(x.numpy(), y.numpy(), seed)),
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=5, lr=1e-2, batch_size=32),
        spec={"user": "crashy", "crash": crash, "seed": seed, "spectrum": spectrum},
    )
