"""Transformer encoder classifier on scikit-learn's bundled 8x8 digits, read as 16 patches of 2x2 pixels.

The attention module names its parts as Hugging Face's BERT does (``query``, ``key``, ``value``,
``num_attention_heads``), so the head-aware pruning pass treats both alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

from infersearch.models.data import split_arrays, to_splits
from infersearch.models.task import ACCURACY, Task, TrainRecipe

PATCH = 2
TOKENS = (8 // PATCH) ** 2


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"digits_transformer: d_model {dim} is not a multiple of heads {heads}")
        self.num_attention_heads = heads
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.output = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        # the head count is read at run time: pruning whole heads changes it, the head width stays; both are
        # written into the reshapes as constants, where ONNX Runtime's attention fusion reads them
        heads = self.num_attention_heads
        width = self.query.out_features // heads
        q, k, v = (p(x).view(b, t, heads, width).transpose(1, 2) for p in (self.query, self.key, self.value))
        if torch.onnx.is_in_onnx_export():
            y = _attention_as_bert_exports(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return self.output(y.transpose(1, 2).reshape(b, t, -1))


def _attention_as_bert_exports(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention spelled as BERT's graph (MatMul, Div, Softmax, MatMul), the pattern ONNX
    Runtime's transformer optimizer fuses into one ``Attention`` op; the exported ``scaled_dot_product_attention``
    (the scale split as two square roots on q and k) is not one it matches, and stays a dozen small ops."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.matmul(scores.softmax(dim=-1), v)


class EncoderLayer(nn.Module):
    """Pre-LayerNorm block: attention, then a GELU feed-forward, each around a residual."""

    def __init__(self, dim: int, heads: int, ff: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.intermediate = nn.Linear(dim, ff)
        self.act = nn.GELU()
        self.ffn_output = nn.Linear(ff, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # attention's branch first: ONNX Runtime's attention fusion takes the first Add feeding a residual's
        # LayerNorm as attention's output, and in the first block the residual itself is an Add (embedding +
        # position); the sum is the same, bit for bit
        x = self.attention(self.norm1(x)) + x
        return x + self.ffn_output(self.act(self.intermediate(self.norm2(x))))


class DigitsTransformer(nn.Module):
    def __init__(self, d_model: int = 128, heads: int = 4, layers: int = 4, ff: int = 512, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(PATCH * PATCH, d_model)
        self.position = nn.Parameter(torch.zeros(1, TOKENS, d_model))
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ff) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.position
        for layer in self.layers:
            h = layer(h)
        return self.classifier(self.norm(h).mean(dim=1))


def load_patches() -> tuple[np.ndarray, np.ndarray]:
    """The digits as ``(n, 16, 4)`` sequences of 2x2 patches, row by row, in [0, 1]; and their labels."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    n = x.shape[0]
    x = x.reshape(n, 8 // PATCH, PATCH, 8 // PATCH, PATCH).transpose(0, 1, 3, 2, 4)
    return x.reshape(n, TOKENS, PATCH * PATCH), digits.target


def task(
    d_model: int = 128,
    heads: int = 4,
    layers: int = 4,
    ff: int = 512,
    seed: int = 0,
    epochs: int = 40,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-2,
    recover_epochs: int = 24,
) -> Task:
    if min(d_model, heads, layers, ff) < 1:
        raise ValueError(
            f"digits_transformer: d_model, heads, layers, ff must be >= 1, got {d_model, heads, layers, ff}"
        )
    x, y = load_patches()
    return Task(
        name="digits_transformer",
        build=lambda: DigitsTransformer(d_model, heads, layers, ff),
        splits=to_splits(split_arrays(x, y, seed)),
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay),
        # measured: at prune.ratio=0.5, 8 epochs of distilled fine-tuning recover 88.6% (baseline 92.5%), 24 92.2%
        recover_epochs=recover_epochs,
        spec={
            "zoo": "digits_transformer",
            "d_model": d_model,
            "heads": heads,
            "layers": layers,
            "ff": ff,
            "seed": seed,
        },
    )
