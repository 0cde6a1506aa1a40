"""The classic tabular risk model on scikit-learn's breast-cancer diagnosis data."""

from __future__ import annotations

import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from torch import nn

from infersearch.models.data import split_arrays, standardize, to_splits
from infersearch.models.task import BINARY_ACCURACY, Metric, Task, TrainRecipe


def build(hidden: tuple[int, ...] = (64, 32), features: int = 30) -> nn.Module:
    """Dense 64 -> 32 -> 1 with a sigmoid output: it serves probabilities."""
    layers: list[nn.Module] = []
    width = features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers += [nn.Linear(width, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def _bce(prob: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy(prob.reshape(-1), y.reshape(-1))


def roc_auc(prob: torch.Tensor, y: torch.Tensor) -> float:
    """Area under the ROC curve: a ranking metric over the whole split, not a share of samples."""
    return float(roc_auc_score(y.reshape(-1).numpy(), prob.reshape(-1).numpy()))


METRICS = {"accuracy": BINARY_ACCURACY, "roc_auc": Metric(roc_auc, name="roc_auc")}


def task(
    hidden: tuple[int, ...] = (64, 32),
    seed: int = 0,
    epochs: int = 60,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 0.0,
    metric: str = "accuracy",
) -> Task:
    if metric not in METRICS:
        raise ValueError(f"diagnosis_mlp: metric {metric!r} is not one of {', '.join(METRICS)}")
    hidden = tuple(int(h) for h in hidden)
    data = load_breast_cancer()
    parts = standardize(split_arrays(data.data, data.target, seed))
    splits = to_splits(parts, y_dtype=torch.float32)
    return Task(
        name="diagnosis_mlp",
        build=lambda: build(hidden, data.data.shape[1]),
        splits=splits,
        loss=_bce,
        metric=METRICS[metric],
        recipe=TrainRecipe(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay),
        spec={"zoo": "diagnosis_mlp", "hidden": list(hidden), "seed": seed},
    )
