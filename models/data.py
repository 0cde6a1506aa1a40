"""Fixed-seed splits of datasets that ship inside scikit-learn (no download)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from infersearch.models.task import Split, Splits


def split_arrays(
    x: np.ndarray, y: np.ndarray, seed: int, val: float = 0.2, test: float = 0.2
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Stratified train/val/test split, reproducible from ``seed``."""
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val / (1 - test), random_state=seed, stratify=y_rest
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def to_splits(parts, x_dtype=torch.float32, y_dtype=torch.long) -> Splits:
    """In-memory ``(train, val, test)`` arrays as Splits."""
    train, val, test = (
        Split.tensors(torch.as_tensor(x, dtype=x_dtype), torch.as_tensor(y, dtype=y_dtype)) for x, y in parts
    )
    return Splits(val=val, test=test, train=train)


def standardize(parts):
    """Fit the scaler on the training part only, so val/test stay unseen."""
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = parts
    scaler = StandardScaler().fit(x_train)
    return (
        (scaler.transform(x_train), y_train),
        (scaler.transform(x_val), y_val),
        (scaler.transform(x_test), y_test),
    )
