"""A multirun job records itself in the study, one way whichever sweeper launched it.

The infersearch sweeper starts the stored trial of each job it launches and names it in ``study.trial``;
a job of any other sweeper (Hydra's basic grid, ``optuna5``, a user's own) starts one for itself, with its
values for the space's keys as Optuna params where the space's distribution admits them. Either way the
job builds the record (infersearch.study.record) and tells it to that trial, so what a job measured is
stored even when the process that launched it is gone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from infersearch.config import StudyConfig
from infersearch.core.optuna_compat import contains, start_trial, trial_of
from infersearch.study.attrs import TrialAttrs
from infersearch.study.record import Record, failure_record, success_record, tell

TRIAL_KEY = "study.trial"


def task_overrides(overrides: list[str]) -> list[str]:
    """The job's overrides without ``study.trial``: what rebuilds the configuration."""
    return [o for o in overrides if not o.startswith(f"{TRIAL_KEY}=")]


def admitted(cfg: DictConfig, dists: Mapping[str, BaseDistribution]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, their distributions): the job's values that the space's distributions admit."""
    params, used = {}, {}
    for key, dist in dists.items():
        value = OmegaConf.select(cfg, key)
        try:
            internal = dist.to_internal_repr(value)
        except (ValueError, TypeError):
            continue
        if contains(dist, internal):
            params[key], used[key] = value, dist
    return params, used


def build_record(
    study: optuna.Study, st: StudyConfig, result: Mapping[str, Any] | None, exc: BaseException | None, ov: list[str]
) -> Record:
    if exc is None:
        try:
            return success_record(study, result, st, ov)
        except Exception as bad:  # e.g. an objective the result lacks
            exc = bad
    return failure_record(exc, ov)


def record_job(
    study: optuna.Study,
    st: StudyConfig,
    cfg: DictConfig,
    dists: Mapping[str, BaseDistribution],
    result: Mapping[str, Any] | None,
    exc: BaseException | None,
    overrides: list[str],
) -> FrozenTrial:
    """Tell the job's outcome to its trial: the sweeper's (``study.trial``) or a new one of its own."""
    ov = task_overrides(overrides)
    record = build_record(study, st, result, exc, ov)
    number = OmegaConf.select(cfg, TRIAL_KEY)
    if number is None:
        params, used = admitted(cfg, dists)
        launched_by = str(HydraConfig.get().sweeper._target_) if HydraConfig.initialized() else "unknown"
        trial = start_trial(study, params, used, TrialAttrs(launched_by=launched_by).stored())
    else:
        trial = trial_of(study, int(number))
    return tell(study, trial, record)
