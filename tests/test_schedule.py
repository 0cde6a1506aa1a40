"""Scheduled runs: exit statuses, time budget, a changed model refused."""

from __future__ import annotations

import optuna

from tests.test_study import load, sweep

FAST = ["engine=eager", "precision=fp32", "quant.bits=32", "batch_size=choice(1,4)", "prune.ratio=0.0"]


def test_every_trial_failing_exits_3(tmp_path, cache_dir):
    proc, out = sweep(
        tmp_path,
        cache_dir,
        "allfail",
        "study.n_trials=2",
        "engine=eager",
        "precision=fp32",
        "quant.bits=32",
        "prune.ratio=0.5",
        "recover.lr=1e12",
        "batch_size=choice(1,4)",
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "every one of the 2 measured trials failed" in proc.stdout + proc.stderr
    assert len(load(out, "allfail").trials) == 2  # recorded, study intact


def test_a_worse_recommendation_than_the_previous_run_exits_5(tmp_path, cache_dir):
    proc, out = sweep(tmp_path, cache_dir, "sched", "study.n_trials=1", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = load(out, "sched")
    (previous,) = study.user_attrs["recommendations"]
    # the previous run stored a recommendation ten times as fast as anything this study reaches now
    faster = {
        **previous,
        "values": {**previous["values"], "latency_ms_per_sample": previous["values"]["latency_ms_per_sample"] / 2},
    }
    study.set_user_attr("recommendations", [faster])
    proc, _ = sweep(tmp_path, cache_dir, "sched", "study.n_trials=2", *FAST)
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert "got worse than the previous run's: latency_ms_per_sample" in proc.stdout + proc.stderr
    # with a tolerance wide enough, the same figures pass
    study.set_user_attr("recommendations", [faster])
    proc, _ = sweep(
        tmp_path, cache_dir, "sched", "study.n_trials=2", *FAST, "study.regression_tolerance.latency_ms_per_sample=50"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_time_budget_stops_starting_trials(tmp_path, cache_dir):
    proc, out = sweep(tmp_path, cache_dir, "budget", "study.n_trials=50", "study.timeout=0.001", *FAST)
    assert "study.timeout" in proc.stdout + proc.stderr
    measured = [t for t in load(out, "budget").trials if t.user_attrs.get("measured")]
    assert len(measured) <= 1


def test_a_changed_model_is_refused_not_mixed_in(tmp_path, cache_dir):
    proc, out = sweep(tmp_path, cache_dir, "ckpt", "study.n_trials=1", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc, _ = sweep(tmp_path, cache_dir, "ckpt", "study.n_trials=2", *FAST, "model.width=24")
    assert proc.returncode == 2
    assert "holds results for another model or checkpoint" in proc.stderr + proc.stdout
    study = optuna.load_study(study_name="ckpt", storage=f"sqlite:///{out / 'study.db'}")
    assert sum(bool(t.user_attrs.get("measured")) for t in study.trials) == 1
