"""W&B in offline mode, for real: the session's lifecycle study (tests/conftest.py) logs to W&B; read back
the run files wandb wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import load, sweep
from tests.wandb_files import read_runs

pytestmark = pytest.mark.slow  # the lifecycle study, and one of its own

SMALL = [
    "engine=eager",
    "prune.ratio=0.0",
    "precision=fp32",
    "quant.bits=choice(32,8)",
    "batch_size=choice(1,4)",
]


def study(tmp: Path, cache_dir: Path, name: str, *args: str, env: dict | None = None):
    proc, out = sweep(tmp, cache_dir, name, *SMALL, *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def trial_runs(runs) -> list:
    return [r for r in runs if r.job_type == "trial"]


def test_one_offline_run_per_measured_trial_plus_the_study_run(lifecycle):
    logged = lifecycle.first
    runs = read_runs(logged / "wandb")
    measured = {t.number: t for t in load(logged, "s1").trials if t.user_attrs.get("measured")}
    trials = trial_runs(runs)
    studies = [r for r in runs if r.job_type == "study"]
    assert len(measured) == 6 and len(trials) == 6 and len(studies) == 1
    assert {r.group for r in runs} == {"s1"}
    assert any(t.user_attrs.get("metrics") for t in measured.values())
    for r in trials:
        t = measured[r.summary["trial"]]
        assert r.name == f"s1-trial-{t.number}"
        assert r.config["params"] == t.params
        assert r.summary["state"] == t.state.name
        if t.state != TrialState.COMPLETE:  # rejected early or failed: no metrics to log
            assert r.summary["error"] == t.user_attrs["error"]
            continue
        assert r.config["quant"]["bits"] == t.user_attrs["params"]["quant_bits"]
        assert r.config["study"]["name"] == "s1"
        for key, value in t.user_attrs["metrics"].items():
            assert r.summary[key] == pytest.approx(value)
        assert r.summary["kernels"] == ("emulated" if t.user_attrs["env"]["emulated"] else "real")
        assert r.summary["env"]["torch"] and r.summary["env"]["threads"] >= 1


def test_study_run_tables_match_the_reports(lifecycle):
    logged = lifecycle.first
    (run,) = [r for r in read_runs(logged / "wandb") if r.job_type == "study"]
    tables = {p.name.split("_")[0]: json.loads(p.read_text()) for p in run.files if p.name.endswith(".table.json")}
    front = tables["pareto"]
    pareto = json.loads((logged / "pareto.json").read_text())
    col = front["columns"].index("number")
    assert sorted(row[col] for row in front["data"]) == sorted(m["number"] for m in pareto)
    acc = front["columns"].index("objective.accuracy")
    assert sorted(row[acc] for row in front["data"]) == sorted(m["values"]["accuracy"] for m in pareto)
    trials = tables["trials"]
    assert len(trials["data"]) == sum(1 for _ in open(logged / "trials.csv")) - 1
    hv = [h["hypervolume"] for h in run.history if "hypervolume" in h]
    assert hv == sorted(hv)  # the front's hypervolume never shrinks
    rec = json.loads((logged / "recommendation.json").read_text())
    assert run.summary["recommendation"]["trial"] == rec["number"]
    study_attrs = load(logged, "s1").user_attrs
    assert run.summary["proposals"] == study_attrs["proposals"]
    (artifact,) = [a for a in run.artifacts if a.type == "model"]
    assert json.loads(artifact.metadata)["trial"] == rec["number"]


def test_wandb_sync_dry_run_lists_every_run(lifecycle):
    wandb = Path(sys.executable).with_name("wandb")  # this environment's, found without it on PATH
    proc = subprocess.run([wandb, "sync", "--dry-run", str(lifecycle.first / "wandb")], capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    listed = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip().endswith(".wandb")]
    assert len({Path(ln.split()[-1]).name for ln in listed}) == 7


def test_a_resumed_study_does_not_log_old_trials_twice(lifecycle):
    runs = read_runs(lifecycle.topped_up / "wandb")
    ids = [r.id for r in trial_runs(runs)]
    assert len(ids) == len(set(ids)) == 8
    assert sum(r.job_type == "study" for r in runs) == 2


def test_a_basic_sweeper_job_logs_itself(lifecycle):
    new = {r.id for r in trial_runs(read_runs(lifecycle.out / "wandb"))}
    new -= {r.id for r in trial_runs(read_runs(lifecycle.topped_up / "wandb"))}
    assert len(new) == 4  # the grid's four jobs, each its own run


def test_online_without_network_falls_back_to_offline_and_leaks_no_key(tmp_path, cache_dir):
    secret = "0123456789abcdef0123456789abcdef01234567"
    env = {"WANDB_API_KEY": secret, "WANDB_BASE_URL": "http://127.0.0.1:9"}  # nothing listens on port 9
    proc, out = study(tmp_path, cache_dir, "on", "study.n_trials=2", "tracking=wandb", "tracking.mode=online", env=env)
    assert "logging offline" in proc.stdout + proc.stderr
    assert len([r for r in read_runs(out / "wandb") if r.job_type == "trial"]) == 2
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in proc.stdout + proc.stderr
