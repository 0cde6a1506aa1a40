"""A user's small ``nn.TransformerEncoder`` on the digits (8 rows of 8 pixels as a sequence): in eval mode
it takes torch's fused fast path, which tracing cannot follow, and ONNX Runtime's symbolic shape inference
asserts on its attention; both engines must take it all the same."""

from __future__ import annotations

from sklearn.datasets import load_digits
from torch import nn

from infersearch.models import Task
from infersearch.models.data import split_arrays, to_splits
from infersearch.models.task import ACCURACY, TrainRecipe


class DigitsEncoder(nn.Module):
    def __init__(self, d_model: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def task(d_model: int = 32, heads: int = 4, layers: int = 2, epochs: int = 2, seed: int = 0) -> Task:
    digits = load_digits()
    x = (digits.images / 16.0).reshape(-1, 8, 8)
    return Task(
        name="digits_transformer",
        build=lambda: DigitsEncoder(d_model, heads, layers),
        splits=to_splits(split_arrays(x, digits.target, seed)),
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=epochs, lr=3e-3, batch_size=64),
        spec={"user": "digits_transformer", "d_model": d_model, "heads": heads, "layers": layers, "seed": seed},
    )
