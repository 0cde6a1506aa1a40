"""``hydra/sweeper=optuna5`` on Hydra apps that know nothing of infersearch (tests/toy_app): the cases
of hydra-optuna-sweeper's own test suite, on Optuna 5. Every app runs with a ``torch`` that raises when
imported, so the generic sweeper is shown to need neither torch nor infersearch's search code. Its sweep
grammar, samplers and failure rate are infersearch's: tests/test_sweep_grammar.py tests them in both."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution

from infersearch.core.optuna_compat import heartbeat
from tests.conftest import ROOT

APP = ROOT / "tests" / "toy_app"


def run_app(tmp_path: Path, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    poison = tmp_path / "poison" / "torch"
    poison.mkdir(parents=True, exist_ok=True)
    (poison / "__init__.py").write_text("raise RuntimeError('torch was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(poison.parent)}
    flags = [a for a in args if a.startswith("--")]  # argparse's options before the overrides
    overrides = [f"hydra.sweep.dir={tmp_path / 'sweep'}", *(a for a in args if not a.startswith("--"))]
    proc = subprocess.run(
        [sys.executable, str(APP / script), "--multirun", *flags, *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def results(tmp_path: Path):
    return OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("with_commandline", [True, False])
def test_the_sphere_example_with_seeded_tpe(tmp_path, with_commandline):
    storage = f"sqlite:///{tmp_path / 'sphere.db'}"
    extra = ["x=choice(0, 1, 2)", "y=0"] if with_commandline else []
    run_app(tmp_path, "sphere.py", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=sphere", "~z", *extra)
    returned = results(tmp_path)
    best = optuna.load_study(study_name="sphere", storage=storage).best_trial
    assert returned.name == "optuna" and returned.best_params["x"] == best.params["x"]
    assert returned.best_value == best.value
    if with_commandline:
        assert "y" not in returned.best_params and best.user_attrs["y"] == "0"
    else:
        assert returned.best_params["y"] == best.params["y"]
    assert returned.best_value <= 2.27  # the old plugin's bound: the 95th percentile over 1,000 seeds


@pytest.mark.slow
@pytest.mark.parametrize("n_trials", [10, 1])
def test_the_grid_sampler_covers_the_grid(tmp_path, n_trials):
    run_app(tmp_path, "sphere.py", "--config-name=grid", f"hydra.sweeper.n_trials={n_trials}")
    returned = results(tmp_path)
    bx, by, bz = (returned.best_params[k] for k in "xyz")
    if n_trials >= 8:  # x: 2 values, y: -1.0 and 0.0, z: 2 values
        assert returned.best_value == 1 and abs(bx) == 1 and by == 0
    else:
        assert bx in (-1, 1) and by in (-1, 0)
    assert bz in ("foo", "bar")


def _dominates(a, b) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.parametrize("with_commandline", [True, False])
def test_the_multi_objective_example(tmp_path, with_commandline):
    extra = ["x=range(0, 5)", "y=range(0, 3)"] if with_commandline else []
    run_app(tmp_path, "multi_objective.py", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123", *extra)
    solutions = results(tmp_path).solutions
    assert solutions
    for s in solutions:
        steps = {0} if with_commandline else {0, 0.5}
        assert s.params.x % 1 in steps and s.params.y % 1 in steps
        assert not any(_dominates(o["values"], s["values"]) for o in solutions)


@pytest.mark.slow
def test_the_custom_search_space_example(tmp_path):
    run_app(tmp_path, "custom_space.py", "hydra/sweeper/sampler=random", "max_z_difference_from_x=0.3")
    best = results(tmp_path).best_params
    assert abs(best.x - best.z) <= 0.3 and 0 <= best["+w"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("max_failure_rate", [0.5, 1.0])
def test_the_failure_rate(tmp_path, max_failure_rate):
    proc = run_app(tmp_path, "sphere.py", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
                   "hydra/sweeper/sampler=random", f"hydra.sweeper.max_failure_rate={max_failure_rate}", "error=true",
                   check=False)  # fmt: skip
    if max_failure_rate < 1.0:
        assert proc.returncode != 0 and "RuntimeError: cfg.error is True" in proc.stderr
    else:
        assert proc.returncode == 0 and "Traceback" not in proc.stderr  # tolerated: one line per trial
        assert "trial 5 failed: RuntimeError: cfg.error is True" in proc.stdout  # Hydra logs to stdout
        assert results(tmp_path).best_value is None


@pytest.mark.slow
def test_a_dict_of_named_metrics_optimises_the_ones_named(tmp_path):
    storage = f"sqlite:///{tmp_path / 'named.db'}"
    run_app(tmp_path, "named.py", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=named")
    study = optuna.load_study(study_name="named", storage=storage)
    assert study.metric_names == ["loss", "width"] and len(study.trials) == 8
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert results(tmp_path).metric_names == ["loss", "width"]
    bad = run_app(tmp_path, "named.py", "hydra.sweeper.direction=minimize", check=False)
    assert bad.returncode != 0 and "name the metrics to optimise in hydra.sweeper.direction" in bad.stdout


@pytest.mark.slow
def test_a_dead_workers_trial_is_failed_and_retried_first(tmp_path):
    """The loop's guarantees hold for any app: a trial left RUNNING by a worker that died (its heartbeat
    stopped) is failed, and the retry its storage queues is the next trial launched."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'beat.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="sphere", storage=storage)
    dead = study.ask({"x": FloatDistribution(-5.5, 5.0, step=0.5), "y": CategoricalDistribution([-5, 0, 5])})
    with heartbeat(dead, study):  # one beat, then silence
        pass
    time.sleep(2.5)  # past the grace period
    run_app(tmp_path, "sphere.py", "--config-name=heartbeat")
    trials = optuna.load_study(study_name="sphere", storage=storage).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].number == 1 and retried[0].params == dead.params
    assert retried[0].state == optuna.trial.TrialState.COMPLETE and len(trials) == 4  # the retry and 2 new


def test_a_choice_value_that_holds_a_comma_reaches_the_job_as_one_value(tmp_path):
    """The sweeper writes each job's overrides quoted where Hydra's grammar needs it (search/study/space.py's
    override_line): unquoted, 'a,b' would be read back as a sweep over a and b."""
    run_app(tmp_path, "sphere.py", "--config-name=grid", "z=choice('a,b', 'c d', \"it's\")")
    jobs = sorted((tmp_path / "sweep").glob("*/.hydra/config.yaml"))
    assert len(jobs) == 12  # x: 2, y: 2, z: 3
    assert {OmegaConf.load(job).z for job in jobs} == {"a,b", "c d", "it's"}
