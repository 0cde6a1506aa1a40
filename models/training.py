"""One training loop, used for the baseline and for recovery after pruning."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from infersearch.models.lm import logits_of
from infersearch.models.task import Predict, Split, Task


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
    max_steps: int | None = None,
) -> nn.Module:
    """Train ``model`` in place on the task's training split (a Dataset is shuffled per epoch with
    ``seed``; a DataLoader keeps its own batches and order).

    With a ``teacher``, the loss mixes the task loss with a distillation term
    (soft targets at ``temperature`` for multi-class outputs, squared error of
    the outputs otherwise), weighted by ``distill_weight``.
    """
    data = task.splits.train
    if data is None or task.loss is None:
        raise ValueError(f"{task.name}: training needs Task.splits.train and Task.loss")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    if teacher is not None:
        teacher.eval()
    steps = 0
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        for x, y in data.batches(batch_size, shuffle=True, seed=seed + epoch):
            if max_steps is not None and steps >= max_steps:
                break
            steps += 1
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
            total += loss.item() * len(x)
            seen += len(x)
        sched.step()
        if on_epoch is not None:
            on_epoch(epoch, total / max(seen, 1))
    model.eval()
    return model


def _distill(out: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    out, target = logits_of(out), logits_of(target)
    if out.dim() == 3:  # a language model: one distribution per position
        out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1, target.shape[-1])
    if out.dim() == 2 and out.shape[1] > 1:
        t = temperature
        return nn.functional.kl_div(
            nn.functional.log_softmax(out / t, dim=1),
            nn.functional.softmax(target / t, dim=1),
            reduction="batchmean",
        ) * (t * t)
    return nn.functional.mse_loss(out, target)


@torch.no_grad()
def evaluate(predict: Predict, task: Task, split: Split, batch_size: int = 512) -> float:
    """The task's metric over a split, read batch by batch (independent of the trial's batch size).

    ``predict`` maps a CPU float batch to CPU outputs: an eval-mode module, or an engine's runner.
    A whole-split metric keeps only the outputs and targets, never the inputs.
    """
    metric = task.metric
    if metric.evaluate is not None:
        return float(metric.evaluate(predict, split.data))
    outs, targets = [], []
    for x, y in split.batches(batch_size):
        outs.append(predict(x if x.dtype == torch.long else x.float()).float())
        targets.append(y)
    return float(metric.fn(torch.cat(outs), torch.cat(targets)))
