"""The interface every zoo entry (and a user's own model) returns.

A :class:`Task` says how to get the trained module (a checkpoint, or the zoo's own baseline training),
where its data comes from (:class:`Split`: a torch Dataset or DataLoader, read batch by batch) and what
"good" means (:class:`Metric`: a name, a direction, a function of a whole split or a full evaluation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

Predict = Callable[[torch.Tensor], torch.Tensor]
Data = Dataset | DataLoader


@dataclass(frozen=True)
class Split:
    """One split's data: a map-style Dataset of ``(input, target)`` items or a DataLoader of
    ``(inputs, targets)`` batches. It is read batch by batch, so a trial holds one batch at a time
    and a data set larger than memory works; a DataLoader keeps its own batch size and order."""

    data: Data

    @classmethod
    def tensors(cls, x: torch.Tensor, y: torch.Tensor) -> Split:
        """In-memory tensors, the convenience the zoo uses."""
        return cls(TensorDataset(x, y))

    def __len__(self) -> int:
        """Samples in the split; a TypeError where the data does not know its length."""
        return len(self.data.dataset if isinstance(self.data, DataLoader) else self.data)

    def batches(
        self, batch_size: int = 512, shuffle: bool = False, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(inputs, targets)`` batches; ``shuffle`` (training) reorders a Dataset with ``seed``."""
        loader = self.data
        if not isinstance(loader, (DataLoader, _FirstBatches)):
            gen = torch.Generator().manual_seed(seed) if shuffle else None
            loader = DataLoader(self.data, batch_size=batch_size, shuffle=shuffle, generator=gen)
        for x, y, *_ in loader:
            yield x, y

    def take(self, n: int) -> torch.Tensor:
        """Up to ``n`` first inputs, reading only the batches they are in."""
        got, have = [], 0
        for x, _ in self.batches(min(n, 512)):
            got.append(x[: n - have])
            have += len(got[-1])
            if have >= n:
                break
        if not got:
            raise ValueError("the split is empty")
        x = torch.cat(got)
        return (x if x.dtype == torch.long else x.float()).contiguous()  # token ids stay integers

    def head(self, n: int) -> Split:
        """The first ``n`` samples (a Dataset) or the first batches holding them (a DataLoader), lazily."""
        if isinstance(self.data, DataLoader):
            return Split(_FirstBatches(self.data, n))
        return Split(torch.utils.data.Subset(self.data, range(min(n, len(self.data)))))


class _FirstBatches:
    """The first batches of a DataLoader that hold at least ``n`` samples, as an iterable of batches."""

    def __init__(self, loader: DataLoader, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self):
        seen = 0
        for batch in self.loader:
            yield batch
            seen += len(batch[0])
            if seen >= self.n:
                return


@dataclass(frozen=True)
class Splits:
    val: Split  # picks configurations
    test: Split  # held out: reported, never used to choose
    train: Split | None = None  # fine-tuning after pruning (recover) and the zoo's baseline training
    calibration: Split | None = None  # int8 calibration and Taylor importance; default: train, else val

    @property
    def calib(self) -> Split:
        return self.calibration or self.train or self.val


@dataclass(frozen=True)
class Metric:
    """What the search keeps: a name (the trial's metric keys, objectives, reports and W&B use it), a
    direction, and either ``fn`` over a whole split's ``(predictions, targets)`` or ``evaluate``, a full
    evaluation ``(predict, data) -> float`` like Neural Compressor's ``eval_func`` or NNCF's ``validate_fn``
    (``data``: the split's Dataset or DataLoader as given). ``proportion``: the value is a share of
    samples (accuracy), so a subset's value has a binomial error and early rejection may use it."""

    fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None
    name: str = "accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"
    evaluate: Callable[[Predict, Any], float] | None = None
    proportion: bool = False

    def __post_init__(self) -> None:
        if (self.fn is None) == (self.evaluate is None):
            raise ValueError(f"metric {self.name!r}: give exactly one of fn and evaluate")
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"metric {self.name!r}: direction must be maximize or minimize, got {self.direction!r}")

    def worse_by(self, baseline: float, value: float) -> float:
        """How much worse ``value`` is than ``baseline``: a drop, or a rise for a minimised metric."""
        return baseline - value if self.direction == "maximize" else value - baseline


@dataclass(frozen=True)
class TrainRecipe:
    """How the baseline is trained; part of the baseline's cache key."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0


@dataclass
class Task:
    """A model to optimise: how to get it trained, its data, its loss and its metric.

    With ``checkpoint`` the module is already trained: ``build()``'s module gets the state_dict file
    (``torch.load(weights_only=True)``), or with ``checkpoint_loader="build"`` ``build()`` itself returns
    the loaded module; the file's SHA-256 is part of the study's identity and nothing is trained.
    Without it, the baseline is trained by ``recipe`` (the zoo) and cached. ``spec`` must hold everything
    else that determines the weights (it is hashed into the key), so equal specs share them.
    """

    name: str
    build: Callable[[], nn.Module]
    splits: Splits
    metric: Metric  # a bare function is taken as Metric(fn, name="metric"), maximised
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # training, recovery, Taylor
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    spec: dict = field(default_factory=dict)
    checkpoint: str | Path | None = None
    checkpoint_loader: Literal["state_dict", "build"] = "state_dict"
    # fine-tuning after pruning, unless recover.epochs says otherwise: a transformer needs more than a CNN
    recover_epochs: int = 8
    recover_steps: int | None = None  # at most this many optimizer steps in all (a language model's corpus is long)
    tokenizer: Any = None  # a language model's (tokenizers.Tokenizer or transformers'): exported beside it
    # a causal language model (models/lm.py): token blocks in, timed as prefill (TTFT) and decode (TPOT)
    generation: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.metric, Metric):  # a bare (predictions, targets) -> float: maximised, unnamed
            if not callable(self.metric):
                raise TypeError(f"task {self.name!r}: metric must be a Metric or a function, got {self.metric!r}")
            self.metric = Metric(self.metric, name="metric")

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self.splits.calib.take(batch_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.example_input(1).shape[1:])


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def classification_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == y).float().mean().item()


def binary_accuracy(prob: torch.Tensor, y: torch.Tensor) -> float:
    return ((prob.reshape(-1) > 0.5).float() == y.reshape(-1)).float().mean().item()


ACCURACY = Metric(classification_accuracy, proportion=True)
BINARY_ACCURACY = Metric(binary_accuracy, proportion=True)
