"""Real studies through Hydra multirun in a subprocess: Optuna storage, front, constraints, resume, launchers,
samplers. Most tests read the session's lifecycle study (tests/conftest.py); the others run a small study
of their own and are marked slow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from infersearch.config import SamplerName, StudyConfig
from infersearch.study.storage import make_sampler
from tests.conftest import crashy_sweep, load, read_csv, sweep


def dominates(a: list[float], b: list[float]) -> bool:
    """a dominates b, for (maximise accuracy, minimise latency)."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


@pytest.mark.slow  # the lifecycle study
def test_study_is_in_storage_and_readable_by_plain_optuna(lifecycle):
    study = load(lifecycle.first, "s1")
    measured = [t for t in study.trials if t.user_attrs.get("measured")]
    assert len(measured) == 6
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    for t in measured:
        if t.state == TrialState.COMPLETE:
            assert {"params", "metrics", "baseline", "env", "config"} <= set(t.user_attrs)
            assert t.values[0] == t.user_attrs["metrics"]["accuracy"]
            assert t.values[1] == t.user_attrs["metrics"]["latency_ms_per_sample"]
            assert "max_drop" in t.constraints
            assert t.user_attrs["hypervolume"] >= 0
    lines = [ln for ln in lifecycle.first_log.splitlines() if "] trial " in ln]
    assert len(lines) >= 6


def optuna_cli(out: Path, command: str, name: str = "s1") -> list[dict]:
    """A plain ``optuna`` CLI command on the study, as JSON."""
    argv = [str(Path(sys.executable).with_name("optuna")), command, "--study-name", name]
    proc = subprocess.run(
        [*argv, "--storage", f"sqlite:///{out / 'study.db'}", "-f", "json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow  # the lifecycle study
def test_plain_optuna_tools_show_each_configuration_once_and_the_front_of_pareto_json(lifecycle):
    out = lifecycle.first
    trials = optuna_cli(out, "trials")
    configs = [tuple(sorted(t["params"].items())) for t in trials]
    assert len(configs) == len(set(configs)) == 6  # the budget: every stored trial was measured, none twice
    best = {t["number"] for t in optuna_cli(out, "best-trials")}
    study = load(out, "s1")
    confirmed = set(study.user_attrs["confirmation"])  # the front as first measured, re-timed side by side
    assert best == {int(n) for n in confirmed} and best
    # pareto.json is the front recomputed with the confirmed latencies: a member re-timed slower may move off,
    # and a trial only it dominated comes on
    pareto = {m["number"] for m in json.loads((out / "pareto.json").read_text())}
    moved_off = best - pareto
    feasible = [
        t for t in study.trials if t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())
    ]
    for t in feasible:
        if t.number in pareto - best:
            assert {m.number for m in feasible if dominates(m.values, t.values)} <= moved_off
    proposals = study.user_attrs["proposals"]  # what the sampler proposed that was not stored
    assert set(proposals) == {"repeated", "refused", "in_flight"}
    said = re.search(r"the sampler's (\d+) repeats, (\d+) refused, (\d+) in flight elsewhere", lifecycle.first_log)
    assert said and [proposals[k] for k in ("repeated", "refused", "in_flight")] == [int(n) for n in said.groups()]
    assert proposals["in_flight"] == 0  # one worker: nothing was ever in flight elsewhere


@pytest.mark.slow  # the lifecycle study
def test_pareto_json_equals_a_brute_force_filter_of_trials_csv(lifecycle):
    out = lifecycle.first
    rows = read_csv(out / "trials.csv")
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] == "True" and not r["reused_from"]]
    # as the report values them: the side-by-side confirmed latency where the front was re-measured, else the
    # first measurement on the study's current anchor
    pts = {int(r["number"]): [float(r["reported.accuracy"]), float(r["reported.latency_ms_per_sample"])] for r in ok}
    for r in ok:
        if r.get("confirmed.latency_ms_per_sample"):
            assert float(r["reported.latency_ms_per_sample"]) == float(r["confirmed.latency_ms_per_sample"])
    expected = {n for n, p in pts.items() if not any(dominates(q, p) for m, q in pts.items() if m != n)}
    pareto = json.loads((out / "pareto.json").read_text())
    assert {m["number"] for m in pareto} == expected
    infeasible = {int(r["number"]) for r in rows if r["feasible"] == "False"}
    assert not infeasible & expected
    assert len(read_csv(out / "pareto.csv")) == len(pareto)
    assert any(r.get("confirmed.latency_ms_per_sample") for r in rows)  # the front was re-measured
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["confirmed"]["latency_ms_per_sample"] > 0 and rec["disturbed"] is False
    # recommended from the front of the trials with a confirmed, undisturbed figure: the front itself once the
    # confirmation re-timed every member
    trusted = {int(r["number"]) for r in ok if r.get("confirmed.latency_ms_per_sample") and r["disturbed"] == "False"}
    pool = {n for n in trusted if not any(dominates(pts[m], pts[n]) for m in trusted if m != n)}
    assert rec["number"] == min(pool, key=lambda n: pts[n][1])  # the default rule: the fastest
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # the lifecycle study
def test_each_measured_trial_shows_where_its_time_went(lifecycle):
    out = lifecycle.first
    steps = ("baseline", "prune", "recover", "engine", "evaluate", "latency", "harness")
    measured = [r for r in read_csv(out / "trials.csv") if r["measured"] == "True" and r["state"] == "COMPLETE"]
    assert measured
    for r in measured:
        times = {k: float(r[f"time.{k}"]) for k in steps if r.get(f"time.{k}")}
        assert {"baseline", "engine", "evaluate", "latency", "harness"} <= set(times)
        assert all(v >= 0 for v in times.values())
        assert sum(times.values()) == pytest.approx(float(r["duration_s"]), rel=0.02)
        if float(r["param.prune_ratio"]) > 0:
            assert "prune" in times and "recover" in times
    assert "time per measured trial (median s" in lifecycle.first_log


@pytest.mark.slow
def test_a_fresh_study_first_tries_the_fast_corner_on_each_engine_and_a_resumed_one_is_not_reseeded(
    tmp_path, cache_dir
):
    args = ("study.warm_start=true", "study.max_drop=null")  # the tiny model loses points there
    proc, out = sweep(tmp_path, cache_dir, "warm", "study.n_trials=6", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warm start: 6 seed configurations queued" in proc.stdout + proc.stderr
    study = load(out, "warm")
    seeded = [t for t in study.trials if t.user_attrs.get("warm_start")]
    assert [t.number for t in seeded] == list(range(6))  # before any of the sampler's own proposals
    assert {t.params["engine"] for t in seeded} == {"eager", "onnxruntime", "openvino"}
    assert {(t.params["batch_size"], t.params["quant.bits"], t.params["precision"]) for t in seeded} == {
        (32, 8, "fp32")
    }
    assert [t.params["prune.ratio"] for t in seeded] == [0.75] * 3 + [0.5] * 3
    proc, _ = sweep(tmp_path, cache_dir, "warm", "study.n_trials=8", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "warm")
    assert sum(bool(t.user_attrs.get("measured")) for t in study.trials) == 8
    assert sum(bool(t.user_attrs.get("warm_start")) for t in study.trials) == 6
    assert "warm start" not in proc.stdout + proc.stderr


@pytest.mark.slow  # the lifecycle study
def test_report_rebuilds_from_storage_alone(lifecycle):
    assert lifecycle.report.returncode == 0, lifecycle.report.stderr[-2000:]
    assert json.loads(lifecycle.rebuilt_pareto) == json.loads((lifecycle.topped_up / "pareto.json").read_text())
    assert "Pareto front" in lifecycle.report.stdout


@pytest.mark.slow  # the lifecycle study
def test_resume_tops_up_to_the_total_and_basic_grid_lands_in_the_same_study(lifecycle):
    study = load(lifecycle.topped_up, "s1")
    assert sum(bool(t.user_attrs.get("measured")) for t in study.trials) == 8
    n_before = len(study.trials)
    study = load(lifecycle.out, "s1")
    grid = [t for t in study.trials[n_before:] if t.user_attrs.get("launched_by", "").endswith(".BasicSweeper")]
    assert len(grid) == 4
    got = {(t.user_attrs["params"]["prune_ratio"], t.user_attrs["params"]["quant_bits"]) for t in grid}
    assert got == {(0.0, 32), (0.0, 8), (0.5, 32), (0.5, 8)}
    assert all(t.params["prune.ratio"] in (0.0, 0.5) for t in grid)  # admitted by the space's distribution


@pytest.mark.slow
def test_constraints_exclude_infeasible_trials_and_impossible_ones_end_with_no_feasible_configuration(
    tmp_path, cache_dir
):
    proc, out = sweep(
        tmp_path,
        cache_dir,
        "slo",
        "study.n_trials=2",
        "study.latency_slo_ms=1e-9",
        "study.max_drop=-0.0",  # no drop allowed: the unpruned float model meets it, the SLO it cannot
        "engine=eager",
        "quant.bits=32",
        "precision=fp32",
        "prune.ratio=0.0",
        "batch_size=choice(1,2)",
    )
    assert proc.returncode == 4, proc.stderr[-3000:]  # exit status: no feasible configuration
    study = load(out, "slo")
    assert len(study.trials) == 2
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.constraints["latency_slo_ms"] > 0 for t in complete)
    assert json.loads((out / "pareto.json").read_text()) == []
    assert not (out / "recommendation.json").exists()
    assert "no feasible configuration" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_joblib_launcher_with_two_jobs_loses_no_trial(tmp_path, cache_dir):
    proc, out = sweep(
        tmp_path,
        cache_dir,
        "par",
        "study.n_trials=4",
        "study.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "study.max_drop=null",
        "precision=fp32",
        "measure.threads=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "par")
    measured = [t for t in study.trials if t.user_attrs.get("measured")]
    assert len(measured) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in study.trials if t.user_attrs.get("measured"))
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert all("metrics" in t.user_attrs for t in measured if t.state == TrialState.COMPLETE)


@pytest.mark.slow
def test_a_trial_that_cannot_meet_the_accuracy_constraint_is_rejected_before_its_latency(tmp_path, cache_dir):
    proc, out = sweep(
        tmp_path,
        cache_dir,
        "early",
        "study.n_trials=2",
        "prune.ratio=0.75",
        "recover.epochs=0",
        "engine=eager",
        "precision=fp32",
        "quant.bits=32",
        "batch_size=choice(1,2)",
    )
    assert proc.returncode == 4, proc.stderr[-2000:]  # nothing feasible is left
    study = load(out, "early")
    rejected = [t for t in study.trials if t.user_attrs.get("rejected")]
    assert len(rejected) == 2 and all(t.state == TrialState.PRUNED for t in rejected)
    assert all("latency not measured" in t.user_attrs["error"] for t in rejected)
    assert all(t.user_attrs["measured"] for t in rejected)  # they used budget: the work was done


SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "nsgaii": "NSGAIISampler",
            "nsga2": "NSGAIISampler", "nsgaiii": "NSGAIIISampler", "gp": "GPSampler", "qmc": "QMCSampler",
            "grid": "GridSampler"}  # fmt: skip


@pytest.mark.parametrize("name", list(SamplerName))
def test_each_sampler_name_builds_its_seeded_optuna_sampler(name):
    dists = {"batch_size": optuna.distributions.CategoricalDistribution([1, 2])}
    assert type(make_sampler(StudyConfig(name="s", sampler=name, seed=3), dists)).__name__ == SAMPLERS[name]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nsga2", "gp", "random"])
def test_a_study_runs_on_each_other_sampler(tmp_path, cache_dir, sampler):
    args = (f"study.sampler={sampler}", "study.n_trials=3", "study.max_drop=null", "batch_size=choice(1,2,4,8,16)")
    proc, out = crashy_sweep(tmp_path, cache_dir, sampler, *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert f"sampler: {SAMPLERS[sampler]} (study.sampler={sampler}, seed 0)" in log
    measured = [t for t in load(out, sampler).trials if t.user_attrs.get("measured")]
    assert len(measured) == 3 and all(t.state == TrialState.COMPLETE for t in measured)
    assert len({tuple(sorted(t.params.items())) for t in measured}) == 3
