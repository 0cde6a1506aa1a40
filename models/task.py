"""The interface every zoo entry (and a user's own model) returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split


@dataclass(frozen=True)
class TrainRecipe:
    """How the baseline is trained; part of the baseline's cache key."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0


@dataclass
class Task:
    """A model to optimise: how to build it, its data, its loss and its metric.

    ``spec`` must hold everything that determines the trained baseline (it is
    hashed into the cache key), so two tasks with equal specs share weights.
    """

    name: str
    build: Callable[[], nn.Module]
    splits: Splits
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric: Callable[[torch.Tensor, torch.Tensor], float]
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    spec: dict = field(default_factory=dict)
    metric_name: str = "accuracy"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.splits.train.x.shape[1:])

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self.splits.train.x[:batch_size]


def classification_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == y).float().mean().item()


def binary_accuracy(prob: torch.Tensor, y: torch.Tensor) -> float:
    return ((prob.reshape(-1) > 0.5).float() == y.reshape(-1)).float().mean().item()
