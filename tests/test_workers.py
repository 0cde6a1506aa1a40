"""Dead workers and many workers on one study: SQLite, a journal file, a real PostgreSQL."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from infersearch.study.record import told
from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow  # several workers, each a real CLI study

FAST = [
    "engine=eager",
    "precision=fp32",
    "quant.bits=choice(32,8)",
    "batch_size=choice(1,2,4,8)",
    "prune.ratio=0.0",
    "study.max_drop=null",
    "measure.min_repeats=6",
    "measure.min_time_s=0.02",
    "tracking=disabled",
    "study.confirm=false",
    "study.export=false",
]


def command(cache_dir: Path, name: str, storage: str, out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "infersearch",
        "-m",
        *TINY,
        *FAST,
        f"cache_dir={cache_dir}",
        f"study.name={name}",
        f"study.storage={storage}",
        f"study.output_dir={out}",
        *args,
    ]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def measured(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.user_attrs.get("measured")]


def test_a_killed_worker_loses_nothing_and_the_rerun_completes_the_budget(tmp_path, cache_dir):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = command(
        cache_dir,
        "kill",
        storage,
        tmp_path / "out",
        "study.n_trials=5",
        "study.heartbeat_interval=1",
        "study.grace_period=2",
        "measure.min_time_s=0.3",
    )
    hit = False
    for _attempt in range(3):  # a trial may finish between the look and the kill: then a new worker, again
        assert _kill_mid_trial(cmd, storage), "the worker finished before it could be killed"
        study = optuna.load_study(study_name="kill", storage=storage)
        if any(t.state == TrialState.RUNNING for t in study.trials):
            hit = True
            break
    assert hit, "three kills in a row missed every trial"
    time.sleep(3)  # past the grace period
    rerun = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    study = optuna.load_study(study_name="kill", storage=storage)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    done = [t for t in measured(study) if t.state == TrialState.COMPLETE]
    states = [(t.number, t.state.name, t.user_attrs.get("error", "")[:120]) for t in study.trials]
    assert len(done) == 5, states
    # the killed trial, failed by the heartbeat; the kill may land while its record is being written
    stale = [t for t in study.trials if t.state == TrialState.FAIL and not told(t)]
    assert len(stale) == 1, states
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == stale[0].number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE


def _kill_mid_trial(cmd: list[str], storage: str) -> bool:
    """Start a worker and SIGKILL it once a trial has run 0.3 s after at least one was measured."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        now = datetime.datetime.now()  # before the read: on a busy machine the read itself may take 0.3 s
        try:
            study = optuna.load_study(study_name="kill", storage=storage)
        except KeyError:
            continue
        running = [
            t for t in study.trials if t.state == TrialState.RUNNING and (now - t.datetime_start).total_seconds() > 0.3
        ]  # a launched job, not a reuse being told: still running when read, begun over 0.3 s before
        if len(measured(study)) >= 1 and running:
            proc.send_signal(signal.SIGKILL)  # mid-trial: no clean-up runs
            proc.wait()
            return True
    proc.kill()
    proc.wait()
    return False


def run_workers(cache_dir: Path, tmp_path: Path, name: str, storage: str, n: int = 3, budget: int = 6):
    # trials run in each worker's own process (isolate=false): what is shared here is the storage, not the trials
    args = (f"study.n_trials={budget}", "isolate=false", "study.seed=0")  # each worker's seed replaces the last
    cmd = command(cache_dir, name, storage, tmp_path / name, *args)
    procs = [
        subprocess.Popen(
            [*cmd[:-1], f"study.seed={i}"],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:]
    study = optuna.load_study(
        study_name=name,
        storage=storage
        if "journal" not in storage
        else optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(storage.removeprefix("journal:"))
        ),
    )
    runs = measured(study)
    assert len(runs) == budget  # exactly the budget across all workers
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["metrics"] for t in runs)  # no result lost
    params = [tuple(sorted(t.params.items())) for t in runs]
    assert len(set(params)) == len(params)  # no parameter set measured twice
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    return study


def test_three_workers_on_a_journal_file(tmp_path, cache_dir):
    run_workers(cache_dir, tmp_path, "journal", f"journal:{tmp_path / 'study.log'}")


def postgres_url() -> str | None:
    url = os.environ.get("INFERSEARCH_TEST_POSTGRES")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CI must provide a PostgreSQL server (INFERSEARCH_TEST_POSTGRES, set by .ci/run)")
    pytest.skip("no PostgreSQL server: set INFERSEARCH_TEST_POSTGRES (bash .ci/postgres.sh starts one)")


def test_three_workers_on_postgresql(tmp_path, cache_dir):
    url = postgres_url()
    name = f"pg-{uuid.uuid4().hex[:8]}"
    study = run_workers(cache_dir, tmp_path, name, url)
    assert study.trials[0].user_attrs["config"]["study"]["storage"] == url  # no password: it is in PGPASSWORD


def test_submitit_local_launcher_runs_the_trials_as_separate_jobs(tmp_path, cache_dir):
    """submitit's local executor: the same code path as SLURM (hydra/launcher=submitit_slurm)."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = command(
        cache_dir,
        "slurm",
        storage,
        tmp_path / "out",
        "study.n_trials=2",
        "study.n_jobs=2",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
    )
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = optuna.load_study(study_name="slurm", storage=storage)
    runs = measured(study)
    assert len(runs) == 2 and all(t.state == TrialState.COMPLETE for t in runs)
    assert list((tmp_path / "out" / "jobs").rglob(".submitit"))  # submitit wrote its job folders
