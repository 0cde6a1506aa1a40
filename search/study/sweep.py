"""What both sweepers do alike beyond the space (search/study/space.py): the sampler from its config,
telling Optuna past the grid sampler's ``Study.stop``, and when failures stop a sweep. Imports neither
torch nor the search code: the ``optuna5`` sweeper uses it in any Hydra app."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, GridSampler
from optuna.trial import FrozenTrial, TrialState

from infersearch.core.errors import ConfigError
from infersearch.study.space import grid

# a failure rate is judged over at least this many trials: one early failure does not stop a tolerant sweep
MIN_JUDGED = 5


def make_sampler(config: Any, dists: Mapping[str, BaseDistribution], key: str) -> BaseSampler:
    """The sampler a config names (hydra_plugins/infersearch_sweeper/samplers.py: ``_target_`` and its
    settings; Hydra hands ``optuna5`` the instantiated one), the grid sampler given the space's grid."""
    if dataclasses.is_dataclass(config) or isinstance(config, DictConfig):
        config = instantiate(OmegaConf.structured(config))
    if isinstance(config, functools.partial) and config.func is GridSampler:
        values = grid(dists)
        if not values:
            raise ConfigError(key, "the grid sampler needs a finite space: choice(...) or range(...) on every key")
        return config(values)
    return config


def tell_past_stop(
    study: optuna.Study, trial: optuna.Trial, values: Sequence[float] | None = None, state: TrialState | None = None
) -> FrozenTrial:
    """``study.tell``; the grid sampler's ``study.stop()`` once the grid is covered is not an error here (the
    trial is stored before it raises, and both sweepers end the sweep when the space is covered)."""
    try:
        if values is None:
            return study.tell(trial, state=state)
        return study.tell(trial, list(values))
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
        return study.get_trials(deepcopy=False)[trial.number]


@dataclass
class FailureRate:
    """``max_failure_rate``, one meaning in both sweepers: stop when more than this share of the trials this
    sweep launched failed, the share taken over at least :data:`MIN_JUDGED` trials (so 0.0 stops at the
    first failure, 0.5 once 3 failed: the first five could no longer pass; 1.0 never stops)."""

    key: str  # where it is set: study.max_failure_rate or hydra.sweeper.max_failure_rate
    rate: float
    failed: int = 0
    finished: int = 0
    errors: list[Any] = field(default_factory=list)  # what the failed trials raised or returned, in order

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(self.key, f"{self.rate} is out of range; allowed: 0 to 1")

    def add(self, failed: bool, error: Any = None) -> None:
        self.finished += 1
        if failed:
            self.failed += 1
            self.errors.append(error)

    def exceeded(self) -> bool:
        return self.failed > self.rate * max(self.finished, MIN_JUDGED)

    def __str__(self) -> str:
        return f"{self.failed} of {self.finished} trials failed ({self.key}={self.rate})"
