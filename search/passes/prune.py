"""Structured channel pruning with torch-pruning's dependency graph."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from infersearch.config import PruneConfig
from infersearch.models.task import Split

_IMPORTANCE = {
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "taylor": lambda: tp.importance.GroupTaylorImportance(),
    "random": lambda: tp.importance.RandomImportance(),
}


@dataclass(frozen=True)
class Footprint:
    macs: int
    params: int


def footprint(model: nn.Module, example: torch.Tensor) -> Footprint:
    """MACs and parameters from torch-pruning's counter (on the float model)."""
    macs, params = tp.utils.count_ops_and_params(model, example)
    return Footprint(int(macs), int(params))


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The last conv/linear layer run in a forward pass: its outputs are the model's, never pruned."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order[-1:]


def prune(
    model: nn.Module,
    cfg: PruneConfig,
    example: torch.Tensor,
    calibration: Split | None = None,
    loss=None,
    seed: int = 0,
    calibration_samples: int = 256,
) -> nn.Module:
    """Remove ``cfg.ratio`` of the channels of every prunable layer, in place.

    Deterministic for a given model, config and seed, which lets the cache
    store only the recovered weights and replay the pruning to rebuild shapes.
    ``calibration`` and ``loss`` feed the gradients the Taylor criterion needs (summed over its first
    ``calibration_samples`` samples, batch by batch).
    """
    if cfg.ratio <= 0:
        return model
    torch.manual_seed(seed)
    importance = _IMPORTANCE[cfg.importance.value if hasattr(cfg.importance, "value") else cfg.importance]()
    model.eval()
    pruner = tp.pruner.BasePruner(
        model,
        example,
        importance=importance,
        pruning_ratio=cfg.ratio,
        ignored_layers=output_layers(model, example),
        round_to=cfg.round_to,
    )
    if isinstance(importance, tp.importance.GroupTaylorImportance):
        if calibration is None or loss is None:
            raise ValueError("taylor importance needs calibration data and a loss")
        model.zero_grad()
        seen = 0
        for x, y in calibration.batches(64):
            loss(model(x.float()), y).backward()
            seen += len(x)
            if seen >= calibration_samples:
                break
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model
