"""Figures that stay true on a busy machine: an anchor has a quality bar, a stale one is re-taken, one study's
figures never mix anchors, and nothing is recommended on a disturbed or unconfirmed figure."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution

from infersearch.compose import to_config
from infersearch.config import Direction, MeasureConfig, ObjectiveConfig, StudyConfig
from infersearch.core.cache import TensorCache
from infersearch.measure.anchor import AnchorBook, judge
from infersearch.measure.latency import Timing, measure_interleaved
from infersearch.report.files import front_table, pareto_figure, write_report
from infersearch.study.figures import reported
from infersearch.trial.evaluate import evaluate_trial

QUICK = MeasureConfig(warmup=1, min_repeats=6, min_time_s=0.08, rounds=2, max_wait_s=0.5)


def _book(tmp_path, m: MeasureConfig = QUICK, threads: int = 2) -> AnchorBook:
    return AnchorBook("model", "cpu", "test cpu", threads, m, TensorCache(tmp_path))


def test_an_anchor_timed_while_neighbours_take_the_cores_is_not_settled_and_never_cached(tmp_path):
    a = torch.randn(96, 96)
    book = _book(tmp_path)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        anchor = book.take(lambda: a @ a, 4)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert not anchor.settled
    assert anchor.foreign_cores is not None and anchor.foreign_cores > 0.5  # what the neighbours took
    assert book.cache.get("anchor", book._key(4)) is None


def test_an_anchor_whose_rounds_disagree_is_not_settled_and_a_settled_one_is_cached(tmp_path):
    a = torch.randn(64, 64)
    lenient = MeasureConfig(**vars(QUICK) | {"max_foreign_cores": 64.0})
    timed = measure_interleaved({"anchor": lambda: a @ a}, 4, Timing(1, 8, 0.08, 4))["anchor"]
    factors = (1.0, 1.6, 1.0, 1.6)  # a slow moment in every other round, with the cores free all along
    drifting = judge(
        dataclasses.replace(timed, round_p50_ms=tuple(r * f for r, f in zip(timed.round_p50_ms, factors))), 0.05
    )
    assert not drifting.settled and drifting.spread > 0.05
    assert judge(dataclasses.replace(timed, disturbed=True), 10.0).settled is False  # rounds never clean
    book = _book(tmp_path, MeasureConfig(**vars(lenient) | {"anchor_spread": 10.0}))
    steady = book.take(lambda: a @ a, 4)
    assert steady.settled and book.cache.get("anchor", book._key(4))["p50_ms"] == steady.ms


def test_an_anchor_taken_in_a_slow_moment_is_re_taken_and_the_trial_reported_at_the_new_one(make_cfg):
    # one thread: two OpenMP threads on cores another program is using can run 100x slower (seen here)
    overrides = ("batch_size=7", "measure.threads=1", "measure.max_foreign_cores=64", "measure.anchor_spread=10")
    cfg = make_cfg(*overrides)
    first = evaluate_trial(to_config(cfg), cfg.model)
    cache = TensorCache(cfg.cache_dir)
    (entry,) = [
        p.stem
        for p in (cache.root / "anchor").glob("*.pt")
        if cache.get("anchor", p.stem)["p50_ms"] == first.metrics["anchor_ms"]
    ]
    slow = first.metrics["anchor_ms"] * 50  # as if a neighbour had slowed the baseline 50x while it was timed
    cache.put("anchor", entry, cache.get("anchor", entry) | {"p50_ms": slow})
    second = evaluate_trial(to_config(cfg), cfg.model)
    m = second.metrics
    assert second.env["anchor_replaced_ms"] == pytest.approx(slow)
    assert m["anchor_ms"] < slow / 5 and cache.get("anchor", entry)["p50_ms"] == m["anchor_ms"]
    assert 0.5 < m["machine_state"] < 2  # the trial's baseline now agrees with its anchor
    assert m["latency_ms_p50"] == pytest.approx(m["latency_ratio_to_baseline"] * m["anchor_ms"])


def _study(points, confirmation=None):
    """An in-memory study of trials (number: batch size, accuracy, ratio to baseline, anchor ms, disturbed)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for bs, acc, ratio, anchor, disturbed in points:
        per_sample = ratio * anchor / bs
        metrics = {
            "accuracy": acc,
            "latency_ms_p50": ratio * anchor,
            "latency_ms_p95": 1.1 * ratio * anchor,
            "latency_ms_per_sample": per_sample,
            "throughput_per_s": 1000 * bs / (ratio * anchor),
            "latency_ratio_to_baseline": ratio,
            "speedup_vs_baseline": 1 / ratio,
            "anchor_ms": anchor,
            "anchor_settled": 1.0,
            "machine_state": 1.0,
            "machine_disturbed": float(disturbed),
        }
        params = {"batch_size": bs, "engine": "onnxruntime", "quant_bits": 8, "precision": "fp32", "prune_ratio": 0.0}
        study.add_trial(
            optuna.trial.create_trial(
                values=[acc, per_sample],
                params={"x": 0.0},
                distributions={"x": FloatDistribution(0, 1)},
                user_attrs={"measured": True, "params": params, "metrics": metrics},
            )
        )
    study.set_user_attr("confirmation", confirmation or {})
    return study


ST = StudyConfig(
    name="truth",
    objectives=[
        ObjectiveConfig("accuracy", Direction.maximize),
        ObjectiveConfig("latency_ms_per_sample", Direction.minimize),
    ],
)


def test_one_study_never_mixes_anchors_earlier_trials_are_re_derived_from_the_current_one(tmp_path):
    # trial 0 was timed against an anchor of 40 ms taken in a slow moment; trial 1 re-took it at 10 ms
    study = _study([(4, 0.95, 0.5, 40.0, False), (4, 0.97, 0.8, 10.0, False), (1, 0.94, 0.3, 2.0, False)])
    figures = reported(study)
    assert figures["0"]["latency_ms_per_sample"] == pytest.approx(0.5 * 10.0 / 4)  # ratio x the current anchor
    assert figures["0"]["anchor_ms_first"] == 40.0 and figures["0"]["throughput_per_s"] == pytest.approx(800)
    assert figures["1"]["latency_ms_per_sample"] == pytest.approx(0.8 * 10.0 / 4)  # as measured
    assert figures["2"]["latency_ms_per_sample"] == pytest.approx(0.3 * 2.0)  # another batch size: its own anchor
    # trial 0, first valued at 5 ms/sample (behind trial 1's 2), is on the front once re-derived (1.25)
    assert 0 in {t.number for t in write_report(study, ST, tmp_path).front}


def test_the_recommendation_rests_on_a_confirmed_undisturbed_figure_only(tmp_path):
    # trial 0 was never re-timed and looks fastest; trial 1's confirmation stayed disturbed; trial 2 is confirmed
    confirmed = {"latency_ms_per_sample": 0.5, "spread": 0.01, "machine_disturbed": 0.0}
    confirmation = {"1": confirmed | {"latency_ms_per_sample": 0.3, "machine_disturbed": 1.0}, "2": confirmed}
    study = _study([(1, 0.93, 0.1, 1.0, False), (1, 0.95, 0.2, 1.0, True), (1, 0.96, 0.6, 1.0, False)], confirmation)
    summary = write_report(study, ST, tmp_path)
    assert summary.recommended.number == 2
    table = front_table(summary, ST)
    assert "DISTURBED" in table and "confirmed" in table and "first" in table
    assert "too busy to measure 1 of 3 trials" in summary.busy
    pareto = {m["number"]: m for m in json.loads((tmp_path / "pareto.json").read_text())}
    assert pareto[1]["disturbed"] is True and pareto[2]["disturbed"] is False
    ax = pareto_figure(study.get_trials(), summary.front, summary.recommended, ST, summary.figures).axes[0]
    edge = {c.get_gid(): tuple(c.get_edgecolor()[0][:3]) for c in ax.collections if c.get_gid()}
    assert edge["trial 1"] == (1.0, 0.0, 0.0) and edge["trial 2"] == (0.0, 0.0, 0.0)  # the disturbed one in red
    assert "red edge = timed on a busy machine (1 of 3)" in ax.get_title()


def test_with_no_trusted_member_the_recommendation_says_it_is_disturbed(tmp_path):
    study = _study([(1, 0.95, 0.1, 1.0, True)])
    summary = write_report(study, ST, tmp_path)
    assert summary.recommended.number == 0 and "marked disturbed" in summary.rule
    assert "the recommendation's own figure is disturbed" in summary.busy


def test_a_machine_found_busy_is_remembered_so_the_next_trials_wait_briefly(tmp_path):
    book = _book(tmp_path)
    assert not book.recently_busy()
    book.note(True)
    assert _book(tmp_path).recently_busy()  # another trial's book on this host sees it
    book.note(False)
    assert not _book(tmp_path).recently_busy()


def _logs_a_warning() -> int:
    logging.getLogger("infersearch.measure.anchor").warning("latency anchor (batch %d) re-taken", 3)
    return 1


def test_a_trials_log_lines_reach_the_study_log_under_their_own_logger(caplog):
    from infersearch.trial.isolation import run_isolated

    with caplog.at_level(logging.WARNING):
        assert run_isolated(_logs_a_warning) == 1
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("infersearch.measure.anchor", "latency anchor (batch 3) re-taken")
    ]
