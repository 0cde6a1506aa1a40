"""Short fine-tuning after pruning, optionally distilled from the unpruned model."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from infersearch.config import RecoverConfig
from infersearch.core.errors import ConfigError
from infersearch.models.task import Task
from infersearch.models.training import fit


def recover(
    pruned: nn.Module,
    teacher: nn.Module | None,
    task: Task,
    cfg: RecoverConfig,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Fine-tune ``pruned`` on the task's training split; a model without one must set recover.epochs=0."""
    if cfg.epochs == 0:
        return pruned
    if task.splits.train is None or task.loss is None:
        raise ConfigError("recover.epochs", f"{task.name} has no training split and loss to fine-tune on: set 0")
    return fit(
        pruned,
        task,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=task.recipe.batch_size,
        seed=seed,
        weight_decay=task.recipe.weight_decay,
        teacher=teacher if cfg.distill > 0 else None,
        distill_weight=cfg.distill,
        temperature=cfg.temperature,
        on_epoch=on_epoch,
        max_steps=cfg.steps,
    )
