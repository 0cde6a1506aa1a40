"""One training loop, used for the baseline and for recovery after pruning."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from infersearch.models.task import Split, Task
from torch import nn


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


def fit(
    model: nn.Module,
    task: Task,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    teacher: nn.Module | None = None,
    distill_weight: float = 0.0,
    temperature: float = 4.0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place on the task's training split.

    With a ``teacher``, the loss mixes the task loss with a distillation term
    (soft targets at ``temperature`` for multi-class outputs, squared error of
    the outputs otherwise), weighted by ``distill_weight``.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    data: Split = task.splits.train
    if teacher is not None:
        teacher.eval()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(data), generator=gen)
        total = 0.0
        for start in range(0, len(data), batch_size):
            idx = order[start : start + batch_size]
            x, y = data.x[idx], data.y[idx]
            out = model(x)
            loss = task.loss(out, y)
            if teacher is not None and distill_weight > 0:
                with torch.no_grad():
                    target = teacher(x)
                loss = (1 - distill_weight) * loss + distill_weight * _distill(out, target, temperature)
            if not math.isfinite(loss.item()):
                raise DivergedError(f"training diverged: loss={loss.item()} at epoch {epoch}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch, total / len(data))
    model.eval()
    return model


def _distill(out: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    if out.dim() == 2 and out.shape[1] > 1:
        t = temperature
        return nn.functional.kl_div(
            nn.functional.log_softmax(out / t, dim=1),
            nn.functional.softmax(target / t, dim=1),
            reduction="batchmean",
        ) * (t * t)
    return nn.functional.mse_loss(out, target)


@torch.no_grad()
def evaluate(predict: Callable[[torch.Tensor], torch.Tensor], task: Task, split: Split, batch_size: int = 512) -> float:
    """The task metric over a split, in fixed batches (independent of the trial's batch size).

    ``predict`` maps a CPU float batch to CPU outputs: an eval-mode module, or an engine's runner.
    """
    outs = [predict(split.x[start : start + batch_size]).float() for start in range(0, len(split), batch_size)]
    return task.metric(torch.cat(outs), split.y)
