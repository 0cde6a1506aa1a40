"""Pruned-and-recovered models, cached by content so trials share them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, replace

import torch
from torch import nn

from infersearch.config import PruneConfig, RecoverConfig
from infersearch.core.cache import TensorCache, content_hash
from infersearch.passes.prune import prune
from infersearch.passes.recover import recover
from infersearch.trial.baseline import Baseline


def pruned_model(
    baseline: Baseline,
    pcfg: PruneConfig,
    rcfg: RecoverConfig,
    seed: int,
    cache: TensorCache,
    timed: Callable[[str], AbstractContextManager] = lambda _step: nullcontext(),
) -> tuple[nn.Module, bool, list[float]]:
    """Return ``(model, cache_hit, recovery_losses)``; ``timed(step)`` times the prune and recover steps.

    Pruning is deterministic, so the cache keeps only the recovered weights;
    a hit replays the cheap pruning to get the shapes and loads them.
    """
    task = baseline.task
    if rcfg.epochs is None:  # the model's own default, resolved before it enters the cache key
        rcfg = replace(rcfg, epochs=task.recover_epochs)
    if rcfg.steps is None:
        rcfg = replace(rcfg, steps=task.recover_steps)

    def do_prune() -> nn.Module:
        with timed("prune"):
            model = baseline.fresh()
            return prune(model, pcfg, task.example_input(1), task.splits.calib, task.loss, seed)

    if pcfg.ratio <= 0 and pcfg.depth <= 0:
        return baseline.fresh(), True, []
    key = content_hash({"baseline": baseline.key, "prune": asdict(pcfg), "recover": asdict(rcfg), "seed": seed})
    built: dict[str, nn.Module] = {}

    def build() -> dict:
        model = do_prune()
        losses: list[float] = []
        with timed("recover"):
            recover(model, baseline.fresh(), task, rcfg, seed, on_epoch=lambda _e, loss: losses.append(loss))
        built["model"] = model
        return {"state_dict": model.state_dict(), "losses": torch.tensor(losses)}

    entry, hit = cache.get_or_build("pruned", key, build)
    model = built.get("model")
    if model is None:
        model = do_prune()
        with timed("recover"):  # loading the cached recovered weights
            model.load_state_dict(entry["state_dict"])
    return model.eval(), hit, entry["losses"].tolist()
