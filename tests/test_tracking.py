"""W&B in offline mode, for real: a small study, then read back the run files wandb wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from tests.conftest import TINY, run_cli
from tests.wandb_files import read_runs

SMALL = [
    "engine=eager",
    "prune.ratio=0.0",
    "precision=fp32",
    "quant.bits=choice(32,8)",
    "batch_size=choice(1,4)",
    "measure.min_repeats=6",
    "measure.min_time_s=0.02",
]


def study(tmp: Path, cache_dir: Path, name: str, *args: str, env: dict | None = None):
    out = tmp / name
    proc = run_cli(
        "-m", *TINY, *SMALL, f"cache_dir={cache_dir}", f"study.name={name}", f"study.output_dir={out}", *args, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


@pytest.fixture(scope="module")
def logged(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("wandb")
    _, out = study(tmp, cache_dir, "wb", "study.n_trials=3")
    return out


def test_one_offline_run_per_measured_trial_plus_the_study_run(logged):
    runs = read_runs(logged / "wandb")
    st = optuna.load_study(study_name="wb", storage=f"sqlite:///{logged / 'study.db'}")
    measured = {t.number: t for t in st.trials if t.user_attrs.get("measured")}
    trials = [r for r in runs if r.job_type == "trial"]
    studies = [r for r in runs if r.job_type == "study"]
    assert len(measured) == 3 and len(trials) == 3 and len(studies) == 1
    assert {r.group for r in runs} == {"wb"}
    for r in trials:
        t = measured[r.summary["trial"]]
        assert r.name == f"wb-trial-{t.number}"
        assert r.config["params"] == t.params
        assert r.config["quant"]["bits"] == t.user_attrs["params"]["quant_bits"]
        assert r.config["study"]["name"] == "wb"
        for key, value in t.user_attrs["metrics"].items():
            assert r.summary[key] == pytest.approx(value)
        assert r.summary["state"] == t.state.name
        assert r.summary["kernels"] == "real"
        assert r.summary["env"]["torch"] and r.summary["env"]["threads"] >= 1


def test_study_run_tables_match_the_reports(logged):
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
    study_attrs = optuna.load_study(study_name="wb", storage=f"sqlite:///{logged / 'study.db'}").user_attrs
    assert run.summary["proposals"] == study_attrs["proposals"]
    (artifact,) = [a for a in run.artifacts if a.type == "model"]
    assert json.loads(artifact.metadata)["trial"] == rec["number"]


def test_wandb_sync_dry_run_lists_every_run(logged):
    wandb = shutil.which("wandb")
    proc = subprocess.run([wandb, "sync", "--dry-run", str(logged / "wandb")], capture_output=True, text=True)
    listed = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip().endswith(".wandb")]
    assert len({Path(ln.split()[-1]).name for ln in listed}) == 4


def test_a_resumed_study_does_not_log_old_trials_twice(logged, cache_dir):
    study(logged.parent, cache_dir, "wb", "study.n_trials=4")
    runs = read_runs(logged / "wandb")
    ids = [r.id for r in runs if r.job_type == "trial"]
    assert len(ids) == len(set(ids)) == 4
    assert sum(r.job_type == "study" for r in runs) == 2


def test_disabled_writes_nothing(tmp_path, cache_dir):
    _, out = study(tmp_path, cache_dir, "off", "study.n_trials=2", "tracking=disabled")
    assert (out / "trials.csv").exists()
    assert not (out / "wandb").exists()


def test_online_without_network_falls_back_to_offline_and_leaks_no_key(tmp_path, cache_dir):
    secret = "0123456789abcdef0123456789abcdef01234567"
    env = {"WANDB_API_KEY": secret, "WANDB_BASE_URL": "http://127.0.0.1:9"}  # nothing listens on port 9
    proc, out = study(tmp_path, cache_dir, "on", "study.n_trials=2", "tracking.mode=online", env=env)
    assert "logging offline" in proc.stdout + proc.stderr
    assert len([r for r in read_runs(out / "wandb") if r.job_type == "trial"]) == 2
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in proc.stdout + proc.stderr
