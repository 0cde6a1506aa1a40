"""A user's own model plugs in through ``_target_``; these exist only in this file.

``xor_task``: trained by the zoo's recipe from in-memory tensors. ``xor_checkpoint_task``: what a user
arrives with, a trained state_dict and DataLoaders over a lazy Dataset, no training split.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from torch import nn
from torch.utils.data import DataLoader, Dataset

from infersearch.models import Task
from infersearch.models.data import split_arrays, to_splits
from infersearch.models.task import ACCURACY, Split, Splits, TrainRecipe, classification_accuracy
from infersearch.run import run
from tests.conftest import TINY, run_cli


def _xor(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=gen) * 2 - 1
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()


def _mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def xor_task(hidden: int = 32, seed: int = 0) -> Task:
    x, y = _xor(600, seed)
    return Task(
        name="xor",
        build=lambda: _mlp(hidden),
        splits=to_splits(split_arrays(x.numpy(), y.numpy(), seed)),
        loss=nn.functional.cross_entropy,
        metric=ACCURACY,
        recipe=TrainRecipe(epochs=30, lr=1e-2, batch_size=32),
        spec={"user": "xor", "hidden": hidden, "seed": seed},
    )


class XorPoints(Dataset):
    """Samples made on access from their index: nothing is held in memory."""

    def __init__(self, n: int, offset: int) -> None:
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _xor(1, self.offset + i)
        return x[0], y[0]


def xor_checkpoint_task(checkpoint: str, hidden: int = 32) -> Task:
    val = DataLoader(XorPoints(200, 10_000), batch_size=50)
    return Task(
        name="xor_checkpoint",
        build=lambda: _mlp(hidden),
        splits=Splits(val=Split(val), test=Split(DataLoader(XorPoints(200, 20_000), batch_size=50))),
        loss=nn.functional.cross_entropy,  # for Taylor importance on the calibration split (here: val)
        metric=ACCURACY,
        spec={"user": "xor_checkpoint", "hidden": hidden},
        checkpoint=checkpoint,
    )


def train_and_save(path: Path, seed: int, hidden: int = 32) -> float:
    """The user's own training, outside infersearch; returns the checkpoint's validation accuracy."""
    torch.manual_seed(seed)
    model, (x, y) = _mlp(hidden), _xor(800, seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.save(model.state_dict(), path)
    val = XorPoints(200, 10_000)
    xs, ys = zip(*(val[i] for i in range(len(val))))
    with torch.no_grad():
        return classification_accuracy(model.eval()(torch.stack(xs)), torch.stack(ys))


def test_user_model_runs_through_the_same_pipeline(make_cfg, tmp_path):
    cfg = make_cfg("prune.ratio=0.5", "quant.bits=8", "batch_size=4")
    with open_dict(cfg):
        cfg.model = {"_target_": f"{__name__}.xor_task", "hidden": 32}
    result = run(cfg, tmp_path)
    assert (tmp_path / "trial.json").exists()
    assert result["baseline"]["accuracy"] > 0.85  # it learned XOR
    assert result["metrics"]["params"] < result["baseline"]["params"]
    assert result["env"]["passes"]["quantize"]["kernel"] == "real"


def test_a_checkpoint_with_dataloaders_is_searched_without_training(make_cfg, tmp_path):
    ckpt = tmp_path / "xor.pt"
    accuracy = train_and_save(ckpt, seed=0)
    cache = tmp_path / "cache"
    cfg = make_cfg(f"cache_dir={cache}", "prune.ratio=0.5", "prune.importance=taylor", "recover.epochs=0")
    cfg2 = make_cfg(f"cache_dir={cache}", "quant.bits=8", "batch_size=4")
    for c in (cfg, cfg2):
        with open_dict(c):
            c.model = {"_target_": f"{__name__}.xor_checkpoint_task", "checkpoint": str(ckpt)}
    pruned, int8 = run(cfg, tmp_path), run(cfg2, tmp_path)
    assert accuracy > 0.9
    for result in (pruned, int8):
        assert result["baseline"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
        assert result["env"]["baseline_source"] == "checkpoint"
    assert pruned["metrics"]["params"] < pruned["baseline"]["params"]
    assert int8["env"]["passes"]["quantize"]["kernel"] == "real"
    assert not (cache / "baseline").exists()  # nothing was trained
    assert (cache / "pruned").exists()


def test_recovery_needs_a_training_split(make_cfg, tmp_path):
    ckpt = tmp_path / "xor.pt"
    train_and_save(ckpt, seed=0)
    cfg = make_cfg(f"cache_dir={tmp_path / 'cache'}", "prune.ratio=0.5", "recover.epochs=1", "isolate=false")
    with open_dict(cfg):
        cfg.model = {"_target_": f"{__name__}.xor_checkpoint_task", "checkpoint": str(ckpt)}
    with pytest.raises(Exception, match="recover.epochs: xor_checkpoint has no training split"):
        run(cfg, tmp_path)


@pytest.mark.slow
def test_a_changed_checkpoint_is_refused_by_the_study(tmp_path):
    ckpt, conf = tmp_path / "mine.pt", tmp_path / "conf" / "model"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text(f"_target_: tests.test_user_model.xor_checkpoint_task\ncheckpoint: {ckpt}\n")
    train_and_save(ckpt, seed=0)
    args = (
        "-m",
        "--config-dir",
        str(tmp_path / "conf"),
        "model=mine",
        *(o for o in TINY if not o.startswith("model.")),
        f"cache_dir={tmp_path / 'cache'}",
        f"study.output_dir={tmp_path / 'study'}",
        "study.n_trials=2",
        "study.confirm=false",
        "study.export=false",
        "tracking=disabled",
        "isolate=false",
        "space=none",
        "batch_size=choice(1,2)",
    )
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "accuracy" in first.stderr + first.stdout
    train_and_save(ckpt, seed=1)  # a new checkpoint under the same name
    again = run_cli(*args)
    assert again.returncode == 2
    assert "holds results for another model or checkpoint" in again.stdout + again.stderr
    assert not (tmp_path / "cache" / "baseline").exists()
