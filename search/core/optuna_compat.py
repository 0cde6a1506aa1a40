"""Every private Optuna API infersearch uses, in one place. Each has no public equivalent in Optuna 5:

- ``optuna.storages._heartbeat.get_heartbeat_thread`` with ``Trial._trial_id`` and ``Study._storage``:
  the heartbeat thread ``study.optimize`` runs, needed here because trials run as Hydra jobs outside it;
- ``optuna._hypervolume.compute_hypervolume``: the exact hypervolume (optuna's own, fast in 2-D and 3-D);
- ``BaseDistribution._contains``: whether a stored value lies in a distribution (ranges, steps, choices);
- ``Trial._suggest``: a parameter from a distribution object (the sweep grammar's), not a suggest_* call;
- ``optuna.storages._heartbeat.is_heartbeat_enabled`` on ``Study._storage``: whether it runs heartbeats;
- ``Study._storage.create_new_trial`` with ``Study._study_id``: a running trial with given parameters, without
  a sampler (the sampler asks its own study, infersearch.study.proposals), its number assigned by the storage;
- ``FrozenTrial._trial_id``: the live trial of a stored one, for the job that measures it to tell;
- ``Study._pop_waiting_trial_id``: a queued trial (a dead worker's, to retry) taken atomically among workers.

tests/test_optuna_compat.py exercises each, so an Optuna release that changes one fails there by name."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

try:
    from optuna._hypervolume import compute_hypervolume as _hypervolume
    from optuna.storages._heartbeat import get_heartbeat_thread as _heartbeat_thread
    from optuna.storages._heartbeat import is_heartbeat_enabled as _heartbeat_enabled
except ImportError as exc:  # pragma: no cover - only on an Optuna that moved them
    raise ImportError(
        f"optuna {optuna.__version__} moved a private API infersearch uses (infersearch.core.optuna_compat): {exc}"
    ) from exc


def quiet_heartbeat_warnings() -> None:
    """Optuna warns about heartbeats outside ``Study.optimize`` and calls them experimental: a sweeper that
    launches trials as Hydra jobs uses them so on purpose. Set when a sweep starts, not at import (Hydra
    imports plugins inside ``warnings.catch_warnings``, which drops filters added then)."""
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    for api in ("fail_stale_trials", "heartbeat_interval", "RetryHeartbeatStaleTrialCallback"):
        warnings.filterwarnings("ignore", message=f".*{api}.*", category=optuna.exceptions.ExperimentalWarning)


def heartbeat(trial: optuna.trial.Trial, study: optuna.Study) -> contextlib.AbstractContextManager[Any]:
    """Optuna's heartbeat thread for ``trial`` while the block runs (a no-op without a heartbeat storage)."""
    return _heartbeat_thread(trial._trial_id, study._storage)


def start_trial(
    study: optuna.Study, params: dict[str, Any], dists: dict[str, BaseDistribution], user_attrs: dict[str, Any]
) -> optuna.Trial:
    """A RUNNING trial in ``study`` with these parameters, as ``ask`` would leave it."""
    template = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING,
        params=params,
        distributions={k: dists[k] for k in params},
        user_attrs=user_attrs,
    )
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id, template_trial=template))


def trial_of(study: optuna.Study, number: int) -> optuna.Trial:
    """The running trial ``number`` of ``study``, to set attributes on and tell (from another process)."""
    return optuna.Trial(study, study.get_trials(deepcopy=False)[number]._trial_id)


def pop_waiting(study: optuna.Study) -> optuna.Trial | None:
    """The oldest WAITING trial, now RUNNING and this worker's, or None when none is left."""
    trial_id = study._pop_waiting_trial_id()
    return None if trial_id is None else optuna.Trial(study, trial_id)


def heartbeat_enabled(study: optuna.Study) -> bool:
    return bool(_heartbeat_enabled(study._storage))


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    return trial._suggest(name, dist)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The volume that minimised ``points`` dominate below ``reference``."""
    return float(_hypervolume(points, reference))


def contains(dist: BaseDistribution, internal: float) -> bool:
    """``internal`` (``dist.to_internal_repr`` of a value) lies in ``dist``."""
    return bool(dist._contains(internal))
