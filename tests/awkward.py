"""A user's model that runs in eager PyTorch but that the converters cannot take: a spectrum
(``torch.fft.rfft``, which ONNX's TorchScript exporter has no symbolic for) and a branch on the data
(which ``torch.export`` refuses to specialise). The error tests need a real library failure."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

from infersearch.models import Task
from infersearch.models.data import split_arrays, to_splits
from infersearch.models.task import ACCURACY, TrainRecipe


class SpectrumNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8 * 5, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, dim=-1).abs().flatten(1)
        if spectrum.mean() > 100:  # never true on the digits: a branch only tracing can follow
            spectrum = spectrum / spectrum.mean()
        return self.head(spectrum)


def task(epochs: int = 2, seed: int = 0) -> Task:
    digits = load_digits()
    x = (digits.images / 16.0).reshape(-1, 8, 8)
    return Task(
        name="digits_spectrum",
        build=SpectrumNet,
        splits=to_splits(split_arrays(x, digits.target, seed)),
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=epochs, lr=3e-3, batch_size=64),
        spec={"user": "digits_spectrum", "seed": seed},
    )
