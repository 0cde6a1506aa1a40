"""Causal language models as a :class:`Task`: token blocks in, perplexity out.

A split holds ``[n, T]`` int64 token blocks (the targets are the same blocks: the loss shifts them by one).
The model is any module that maps ``input_ids`` to next-token logits, a Hugging Face
``*ForCausalLM`` included (its output's ``.logits`` are read). The perplexity is exp of the mean
next-token negative log-likelihood over every token of the split, from a predictor that returns the logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from infersearch.models.task import Metric, Predict, Split, Splits, Task, TrainRecipe


def quiet_imports() -> None:
    """torchao and torch log at import what a CPU user cannot act on (a CUDA-only kernel library that did
    not load, a deprecated enum registration): kept out of every trial's output."""
    import logging
    import warnings

    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*_stable_hash_for_caching.*")


quiet_imports()


def require_lm() -> None:
    """The language-model extra, or one line that says how to install it."""
    import importlib.util

    missing = [m for m in ("transformers", "tokenizers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"language models need {', '.join(missing)}: pip install 'infersearch[lm]'")


def logits_of(out: Any) -> torch.Tensor:
    """The logits of a module's output: a tensor, or a Hugging Face output's ``.logits``."""
    return out if isinstance(out, torch.Tensor) else out.logits


def causal_lm_loss(out: Any, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: the logits at position t predict token t + 1."""
    logits = logits_of(out)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


@torch.no_grad()
def perplexity(predict: Predict, data: Dataset | DataLoader, batch_size: int = 16) -> float:
    """exp(mean next-token NLL) over every block of ``data``."""
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    total, count = 0.0, 0
    for ids, *_ in loader:
        n = ids[:, 1:].numel()
        total += causal_lm_loss(predict(ids), ids).item() * n
        count += n
    return math.exp(total / max(count, 1))


PERPLEXITY = Metric(evaluate=perplexity, name="perplexity", direction="minimize")


def token_splits(train: torch.Tensor, val: torch.Tensor, test: torch.Tensor) -> Splits:
    """``[n, T]`` token blocks per split, each its own target."""
    return Splits(val=Split.tensors(val, val), test=Split.tensors(test, test), train=Split.tensors(train, train))


def lm_task(name: str, build, splits: Splits, spec: dict, recipe: TrainRecipe, **kw: Any) -> Task:
    """A causal-LM task: perplexity (minimised), next-token loss, the generation settings in ``kw``."""
    return Task(name=name, build=build, splits=splits, metric=PERPLEXITY, loss=causal_lm_loss, recipe=recipe,
                spec=spec, generation=True, **kw)  # fmt: skip


def is_causal_lm(model: torch.nn.Module) -> bool:
    """A module the language-model passes and engines take: a Hugging Face model that generates."""
    return (
        bool(getattr(getattr(model, "config", None), "is_decoder", False))
        or hasattr(model, "generate")
        and ("CausalLM" in type(model).__name__)
    )
