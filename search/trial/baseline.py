"""The model to optimise: the task from the config and its baseline, loaded from the user's
checkpoint or (the zoo) trained once and cached."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from infersearch.core.cache import TensorCache, content_hash
from infersearch.core.errors import ConfigError
from infersearch.models.task import Task, file_sha256
from infersearch.models.training import evaluate, fit


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
    if task.checkpoint is not None and not _readable(task.checkpoint):
        raise ConfigError("model.checkpoint", f"{task.checkpoint} is not a readable file")
    return task


def _readable(path: Any) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


@dataclass
class Baseline:
    task: Task
    model: nn.Module
    key: str
    val_metric: float
    test_metric: float
    source: str  # "checkpoint", "trained" (in this call) or "cache" (trained before)

    def fresh(self) -> nn.Module:
        """An independent copy of the baseline (passes modify models in place)."""
        return copy.deepcopy(self.model).eval()


def baseline_key(task: Task) -> str:
    """Content hash of everything that determines the baseline's weights: the checkpoint file's SHA-256
    for a trained model (a changed file is a new key, which a study refuses), else spec and recipe."""
    if task.checkpoint is not None:
        return content_hash({"spec": task.spec, "checkpoint_sha256": file_sha256(task.checkpoint)})
    return content_hash({"spec": task.spec, "recipe": task.recipe.__dict__})


def get_baseline(task: Task, cache: TensorCache) -> Baseline:
    """The checkpoint's module, or (no checkpoint) train on first use and load the cached weights later."""
    key = baseline_key(task)
    if task.checkpoint is not None:
        model, source = _from_checkpoint(task), "checkpoint"
    else:
        model, hit = _trained(task, key, cache)
        source = "cache" if hit else "trained"
    model.eval()
    return Baseline(
        task=task,
        model=model,
        key=key,
        val_metric=evaluate(model, task, task.splits.val),
        test_metric=evaluate(model, task, task.splits.test),
        source=source,
    )


def _from_checkpoint(task: Task) -> nn.Module:
    if task.checkpoint_loader == "build":
        return task.build()
    state = torch.load(task.checkpoint, map_location="cpu", weights_only=True)
    model = task.build()
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError("model.checkpoint", f"{task.checkpoint} does not fit build()'s module: {first}") from exc
    return model


def _trained(task: Task, key: str, cache: TensorCache) -> tuple[nn.Module, bool]:
    seed = int(task.spec.get("seed", 0))

    def train() -> dict:
        torch.manual_seed(seed)  # initial weights are part of what the key determines
        model = task.build()
        r = task.recipe
        fit(model, task, r.epochs, r.lr, r.batch_size, seed=seed, weight_decay=r.weight_decay)
        return {"state_dict": model.state_dict()}

    entry, hit = cache.get_or_build("baseline", key, train)
    model = task.build()
    model.load_state_dict(entry["state_dict"])
    return model, hit
