"""Structured channel pruning with torch-pruning's dependency graph.

On a transformer it removes whole attention heads (torch-pruning's head handling, the head width
kept) and feed-forward channels; a group that reaches a LayerNorm is the residual stream (the
embedding width every block shares) and is left whole, so attention and the norms stay valid.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from infersearch.config import PruneConfig
from infersearch.models.lm import is_causal_lm
from infersearch.models.task import Split
from infersearch.passes.architecture import head_counts, set_head_counts
from infersearch.passes.lm_prune import prune_lm

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
    if is_causal_lm(model):
        return prune_lm(model, cfg, calibration)
    if cfg.ratio <= 0:
        return model
    torch.manual_seed(seed)
    importance = _IMPORTANCE[cfg.importance]()
    model.eval()
    heads = head_counts(model) if cfg.heads else {}
    with warnings.catch_warnings():  # it names unwrapped parameters (position embeddings) once per trial
        warnings.filterwarnings("ignore", message=".*unwrapped parameters.*")
        warnings.filterwarnings("ignore", message=".*last non-singleton dimension.*")
        pruner = tp.pruner.BasePruner(
            model,
            example,
            importance=importance,
            pruning_ratio=cfg.ratio,
            ignored_layers=output_layers(model, example),
            round_to=cfg.round_to,
            num_heads=heads,
            prune_num_heads=bool(heads),
            prune_head_dims=False,
            head_pruning_ratio=cfg.ratio if heads else 0.0,
        )
    if isinstance(importance, tp.importance.GroupTaylorImportance):
        _taylor_gradients(model, calibration, loss, calibration_samples)
    for group in pruner.step(interactive=True):
        if not _residual_stream(group):
            group.prune()
    set_head_counts(model, pruner.num_heads)
    model.zero_grad(set_to_none=True)
    return model


def _residual_stream(group) -> bool:
    """A group that prunes a LayerNorm changes the width every transformer block adds into."""
    return any(isinstance(dep.target.module, nn.LayerNorm) for dep, _ in group)


def _taylor_gradients(model: nn.Module, calibration: Split | None, loss, samples: int) -> None:
    if calibration is None or loss is None:
        raise ValueError("taylor importance needs calibration data and a loss")
    model.zero_grad()
    seen = 0
    for x, y in calibration.batches(64):
        loss(model(x.float()), y).backward()
        seen += len(x)
        if seen >= samples:
            break
