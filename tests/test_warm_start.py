"""The warm start's seeds, from the space alone: the fast corner per engine, other keys at their defaults."""

from __future__ import annotations

from infersearch.study.space import search_space
from infersearch.study.warm_start import warm_start_trials

DEFAULT = {
    "prune": {"ratio": "choice(0.0, 0.25, 0.5, 0.75)"},
    "quant": {"bits": "choice(32, 8)"},
    "precision": "choice(fp32, bf16)",
    "batch_size": "choice(1, 32)",
    "engine": "choice(eager, onnxruntime, openvino)",
}


def test_seeds_are_the_fast_corner_on_each_engine_at_two_prune_ratios():
    dists = search_space(DEFAULT, []).dists
    seeds = warm_start_trials(dists, {"precision": "fp32", "engine": "eager"})
    assert [(s["prune.ratio"], s["engine"]) for s in seeds] == [
        (0.75, "eager"), (0.75, "onnxruntime"), (0.75, "openvino"),
        (0.5, "eager"), (0.5, "onnxruntime"), (0.5, "openvino"),
    ]  # fmt: skip
    assert all(s["batch_size"] == 32 and s["quant.bits"] == 8 and s["precision"] == "fp32" for s in seeds)


def test_continuous_prune_and_fixed_keys():
    space = search_space(DEFAULT, ["prune.ratio=interval(0, 0.9)", "engine=onnxruntime", "precision=bf16"])
    dists = space.dists
    seeds = warm_start_trials(dists, {"precision": "bf16", "engine": "onnxruntime"}, prune_steps=2)
    assert space.lines() == ["engine=onnxruntime", "precision=bf16"]
    assert [s["prune.ratio"] for s in seeds] == [0.9, 0.45]
    assert all(set(s) == {"prune.ratio", "batch_size", "quant.bits"} for s in seeds)  # fixed keys are no dimension


def test_a_default_the_space_does_not_allow_is_left_to_the_sampler():
    dists = search_space({**DEFAULT, "precision": "choice(bf16, fp16)"}, []).dists
    assert all("precision" not in s for s in warm_start_trials(dists, {"precision": "fp32"}))


def test_a_space_without_known_dimensions_is_left_to_the_sampler():
    dists = search_space({"recover": {"epochs": "choice(2, 8)"}}, []).dists
    assert warm_start_trials(dists, {"recover.epochs": 8}) == []
