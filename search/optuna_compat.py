"""Every private Optuna API infersearch uses, in one place. Each has no public equivalent in Optuna 5:

- ``optuna.storages._heartbeat.get_heartbeat_thread`` with ``Trial._trial_id`` and ``Study._storage``:
  the heartbeat thread ``study.optimize`` runs, needed here because trials run as Hydra jobs outside it;
- ``optuna._hypervolume.compute_hypervolume``: the exact hypervolume (optuna's own, fast in 2-D and 3-D);
- ``BaseDistribution._contains``: whether a stored value lies in a distribution (ranges, steps, choices);
- ``Trial._suggest``: a parameter from a distribution object (the sweep grammar's), not a suggest_* call;
- ``optuna.storages._heartbeat.is_heartbeat_enabled`` on ``Study._storage``: whether it runs heartbeats.

tests/test_optuna_compat.py exercises each, so an Optuna release that changes one fails there by name."""

from __future__ import annotations

import contextlib
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
        f"optuna {optuna.__version__} moved a private API infersearch uses (search/optuna_compat.py): {exc}"
    ) from exc


def heartbeat(trial: optuna.trial.Trial, study: optuna.Study) -> contextlib.AbstractContextManager[Any]:
    """Optuna's heartbeat thread for ``trial`` while the block runs (a no-op without a heartbeat storage)."""
    return _heartbeat_thread(trial._trial_id, study._storage)


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
