from __future__ import annotations

import torch

from infersearch.core.cache import TensorCache
from infersearch.trial.baseline import get_baseline, load_task


def test_baseline_is_trained_once_and_a_corrupt_entry_is_rebuilt(tmp_path):
    cache = TensorCache(tmp_path)
    task = load_task({"_target_": "infersearch.models.diagnosis_mlp.task", "epochs": 2})
    first = get_baseline(task, cache)
    second = get_baseline(task, cache)
    assert (first.source, second.source) == ("trained", "cache")
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    (entry,) = (tmp_path / "baseline").glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:-100])  # a truncated write
    third = get_baseline(task, cache)
    assert third.source == "trained"
    assert third.val_metric == first.val_metric  # same seed, same weights


def test_a_different_recipe_is_a_different_entry(tmp_path):
    cache = TensorCache(tmp_path)
    get_baseline(load_task({"_target_": "infersearch.models.diagnosis_mlp.task", "epochs": 2}), cache)
    other = get_baseline(load_task({"_target_": "infersearch.models.diagnosis_mlp.task", "epochs": 3}), cache)
    assert other.source == "trained"
    assert len(list((tmp_path / "baseline").glob("*.pt"))) == 2
