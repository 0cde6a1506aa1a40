"""The private Optuna APIs behind infersearch.core.optuna_compat still do what infersearch needs: on an Optuna
release that changes one, the test named after it fails."""

from __future__ import annotations

import threading

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from infersearch.core.optuna_compat import (
    contains,
    heartbeat,
    heartbeat_enabled,
    hypervolume,
    pop_waiting,
    start_trial,
    suggest,
    trial_of,
)


def test_heartbeat_thread_runs_for_a_trial_asked_outside_optimize(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    before = {t.name for t in threading.enumerate()}
    with heartbeat(trial, study):
        assert len({t.name for t in threading.enumerate()} - before) == 1  # Optuna's own heartbeat thread
    study.tell(trial, 1.0)


def test_hypervolume_is_exact():
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(points, np.array([4.0, 4.0])) == 6.0  # 3 + 2 + 1 unit columns


def test_distributions_tell_a_value_inside_from_one_outside():
    assert contains(IntDistribution(1, 4, step=1), 3.0) and not contains(IntDistribution(1, 4), 5.0)
    assert contains(FloatDistribution(0.0, 0.9), 0.5) and not contains(FloatDistribution(0.0, 1.0, step=0.25), 0.3)
    dist = CategoricalDistribution(["eager", "onnxruntime"])
    assert contains(dist, dist.to_internal_repr("onnxruntime")) and not contains(dist, 2.0)


def test_heartbeat_enabled_tells_storages_apart(tmp_path):
    beating = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'b.db'}", heartbeat_interval=1)
    assert heartbeat_enabled(optuna.create_study(storage=beating))
    assert not heartbeat_enabled(optuna.create_study(storage=f"sqlite:///{tmp_path / 'p.db'}"))
    assert not heartbeat_enabled(optuna.create_study())


def test_suggest_takes_a_distribution_object():
    trial = optuna.create_study().ask()
    assert suggest(trial, "k", IntDistribution(1, 3)) in (1, 2, 3) and "k" in trial.params


def test_start_trial_stores_a_running_trial_with_given_params_numbered_by_the_storage(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    study.add_trial(optuna.trial.create_trial(params={"k": 1}, distributions={"k": IntDistribution(1, 3)}, value=1.0))
    trial = start_trial(study, {"k": 2}, {"k": IntDistribution(1, 3), "unused": IntDistribution(0, 1)}, {"a": 1})
    assert trial.number == 1 and trial.params == {"k": 2} and trial.user_attrs == {"a": 1}
    assert study.trials[1].state == optuna.trial.TrialState.RUNNING
    study.tell(trial, 2.0)
    assert study.trials[1].value == 2.0


def test_pop_waiting_takes_each_queued_trial_once(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    study.enqueue_trial({"k": 3})
    trial = pop_waiting(study)
    assert trial is not None and suggest(trial, "k", IntDistribution(1, 3)) == 3
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING
    assert pop_waiting(study) is None


def test_trial_of_gives_the_running_trial_by_number(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url)
    study.ask()
    asked = study.ask()
    other = optuna.load_study(study_name=study.study_name, storage=url)  # as the job's own process opens it
    trial = trial_of(other, asked.number)
    trial.set_user_attr("told_by", "job")
    other.tell(trial, 3.0)
    assert study.trials[1].value == 3.0 and study.trials[1].user_attrs == {"told_by": "job"}
