"""Latency anchored to the baseline: the arithmetic on real timings, and the cached anchor shared by trials."""

from __future__ import annotations

import dataclasses

import pytest

from infersearch.compose import to_config
from infersearch.measure.anchor import Anchor, anchored_metrics, round_ratio
from infersearch.measure.latency import Timing, measure_interleaved
from infersearch.trial.evaluate import evaluate_trial


def _slower(stats, factors):
    """The same timings as seen on a machine that was ``factors[r]`` times slower in round r."""
    rounds = tuple(p * f for p, f in zip(stats.round_p50_ms, factors))
    return dataclasses.replace(stats, round_p50_ms=rounds, p50_ms=stats.p50_ms * max(factors))


def test_a_slow_machine_state_moves_the_raw_latency_but_not_the_anchored_one():
    import torch

    a, b = torch.randn(96, 96), torch.randn(192, 192)
    timing = Timing(warmup=2, min_repeats=20, min_time_s=0.1, rounds=4)
    stats = measure_interleaved({"variant": lambda: a @ a, "baseline": lambda: b @ b}, 8, timing)
    v, base = stats["variant"], stats["baseline"]
    anchor = Anchor(base.p50_ms, 0.0, None, settled=True, taken="now")
    quiet = anchored_metrics(v, base, anchor)
    factors = (1.0, 2.0, 2.0, 1.5)  # both candidates of a round ran moments apart: same state
    slow = anchored_metrics(_slower(v, factors), _slower(base, factors), anchor)
    assert slow["latency_ms_p50_measured"] == pytest.approx(2 * quiet["latency_ms_p50_measured"])
    assert slow["latency_ms_p50"] == pytest.approx(quiet["latency_ms_p50"])
    assert slow["machine_state"] == pytest.approx(2 * quiet["machine_state"])
    assert quiet["latency_ms_p50"] == pytest.approx(round_ratio(v, base) * base.p50_ms)
    assert quiet["speedup_vs_baseline"] == pytest.approx(1 / quiet["latency_ratio_to_baseline"])
    assert quiet["latency_ms_p95"] >= quiet["latency_ms_p50"]
    assert quiet["latency_ms_per_sample"] == pytest.approx(quiet["latency_ms_p50"] / 8)


# The caching test accepts any anchor as settled and never stale (the suite may share a drifting machine):
# the bar and the re-take have their own tests (test_truth.py).
LENIENT = ("measure.max_foreign_cores=64", "measure.anchor_spread=10", "measure.max_state=100")


def test_trials_share_one_cached_anchor_per_batch_size(make_cfg):
    first = evaluate_trial(to_config(make_cfg("batch_size=4", *LENIENT)), make_cfg().model)
    second_cfg = make_cfg("batch_size=4", "prune.ratio=0.5", *LENIENT)
    second = evaluate_trial(to_config(second_cfg), second_cfg.model)
    other_batch = evaluate_trial(to_config(make_cfg("batch_size=2", *LENIENT)), make_cfg().model)
    anchor = first.metrics["anchor_ms"]
    assert second.env["anchor_cache_hit"] is True
    assert second.metrics["anchor_ms"] == anchor
    assert other_batch.metrics["anchor_ms"] != anchor
    for r in (first, second):
        m = r.metrics
        assert m["latency_ms_p50"] == pytest.approx(m["latency_ratio_to_baseline"] * anchor)
        assert r.baseline["latency_ms_p50"] == pytest.approx(anchor)  # the baseline is reported at the anchor
        assert m["machine_state"] == pytest.approx(r.baseline["latency_ms_p50_measured"] / anchor)
        assert m["latency_ms_p50_measured"] > 0 and "anchored" in r.env["latency_method"]


def test_without_the_anchor_the_figures_are_as_measured(make_cfg):
    cfg = make_cfg("measure.anchor=false")
    r = evaluate_trial(to_config(cfg), cfg.model)
    assert "anchor_ms" not in r.metrics and r.env["latency_method"] == "measured"
    assert r.metrics["speedup_vs_baseline"] == pytest.approx(r.baseline["latency_ms_p50"] / r.metrics["latency_ms_p50"])
