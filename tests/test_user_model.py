"""A user's own model plugs in through ``_target_``; this one exists only in this file."""

from __future__ import annotations

import torch
from infersearch.__main__ import run
from infersearch.models import Task
from infersearch.models.data import split_arrays, to_splits
from infersearch.models.task import ACCURACY, TrainRecipe
from omegaconf import open_dict
from torch import nn


def xor_task(hidden: int = 32, seed: int = 0) -> Task:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(600, 2, generator=gen) * 2 - 1
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    splits = to_splits(split_arrays(x.numpy(), y.numpy(), seed))
    return Task(
        name="xor",
        build=lambda: nn.Sequential(
            nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        ),
        splits=splits,
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=30, lr=1e-2, batch_size=32),
        spec={"user": "xor", "hidden": hidden, "seed": seed},
    )


def test_user_model_runs_through_the_same_pipeline(make_cfg, tmp_path):
    cfg = make_cfg("prune.ratio=0.5", "quant.bits=8", "batch_size=4")
    with open_dict(cfg):
        cfg.model = {"_target_": f"{__name__}.xor_task", "hidden": 32}
    result = run(cfg, tmp_path)
    assert (tmp_path / "trial.json").exists()
    assert result["baseline"]["accuracy"] > 0.85  # it learned XOR
    assert result["metrics"]["params"] < result["baseline"]["params"]
    assert result["env"]["passes"]["quantize"]["kernel"] == "real"
