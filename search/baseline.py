"""The model to optimise: the task from the config and its trained, cached baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hydra
import torch
from infersearch.cache import TensorCache, content_hash
from infersearch.errors import ConfigError
from infersearch.models.task import Task
from infersearch.models.training import evaluate, fit
from omegaconf import DictConfig, OmegaConf
from torch import nn


def load_task(model_cfg: Any) -> Task:
    """Instantiate the ``model`` config node (a zoo entry or a user's ``_target_``)."""
    node = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(model_cfg)
    if "_target_" not in node:
        raise ConfigError("model", "needs a _target_ that returns an infersearch.models.Task")
    try:
        task = hydra.utils.instantiate(node, _convert_="all")
    except Exception as exc:  # instantiate wraps the builder's error; keep its message, one line
        cause = exc.__cause__ or exc
        raise ConfigError("model", f"{node._target_} failed: {type(cause).__name__}: {cause}") from exc
    if not isinstance(task, Task):
        raise ConfigError("model", f"{node._target_} returned {type(task).__name__}, expected infersearch.models.Task")
    return task


@dataclass
class Baseline:
    task: Task
    model: nn.Module
    key: str
    val_accuracy: float
    test_accuracy: float
    cache_hit: bool

    def fresh(self) -> nn.Module:
        """An independent copy of the trained baseline (passes modify models in place)."""
        model = self.task.build()
        model.load_state_dict(self.model.state_dict())
        return model.eval()


def baseline_key(task: Task) -> str:
    """Content hash of everything that determines the trained baseline. A user's own
    checkpoint belongs in ``Task.spec`` as its file hash, so a new checkpoint is a new key."""
    return content_hash({"spec": task.spec, "recipe": task.recipe.__dict__})


def get_baseline(task: Task, cache: TensorCache) -> Baseline:
    """Train on first use; later calls (any process) load the cached weights."""
    key = baseline_key(task)

    seed = int(task.spec.get("seed", 0))

    def train() -> dict:
        torch.manual_seed(seed)  # initial weights are part of what the key determines
        model = task.build()
        fit(
            model,
            task,
            task.recipe.epochs,
            task.recipe.lr,
            task.recipe.batch_size,
            seed=seed,
            weight_decay=task.recipe.weight_decay,
        )
        return {"state_dict": model.state_dict()}

    entry, hit = cache.get_or_build("baseline", key, train)
    model = task.build()
    model.load_state_dict(entry["state_dict"])
    model.eval()
    return Baseline(
        task=task,
        model=model,
        key=key,
        val_accuracy=evaluate(model, task, task.splits.val),
        test_accuracy=evaluate(model, task, task.splits.test),
        cache_hit=hit,
    )
