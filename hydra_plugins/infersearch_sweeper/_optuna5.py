"""The ``optuna5`` sweeper: the shared loop (_loop.py) with hooks that ask the stored study for ``n_jobs``
trials at a time (``n_trials`` per run, as hydra-optuna-sweeper), launch them as Hydra jobs through the
configured launcher, tell Optuna what each returned (a float, a list of floats, or a dict of named
metrics), and write ``optimization_results.yaml`` as hydra-optuna-sweeper did.

The search space comes from ``hydra.sweeper.params`` and the command line, in Hydra's sweep grammar, read
as infersearch's sweeper reads it (search/study/space.py): ``range(1,3)`` is 1 and 2, as in a grid sweep
(hydra-optuna-sweeper included 3). The sampler, telling past the grid's end and ``max_failure_rate`` are
infersearch's too (search/study/sweep.py).
Heartbeats, stale trials of dead workers failed and retried (Optuna's ``ask`` takes the queued retry
first): the loop's, as for infersearch's own sweeper."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.errors import CompactHydraException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.infersearch_sweeper._loop import Launch, job_value, run_loop
from infersearch.core.errors import ConfigError
from infersearch.core.optuna_compat import suggest
from infersearch.study.space import Space, grid_size, override_line, search_space
from infersearch.study.sweep import FailureRate, make_sampler, tell_past_stop

log = logging.getLogger(__name__)


def directions_of(direction: Any) -> tuple[list[str], list[str] | None]:
    """(directions, metric names or None) from ``hydra.sweeper.direction``."""
    if isinstance(direction, Mapping):
        return [str(getattr(d, "name", d)) for d in direction.values()], [str(k) for k in direction]
    if isinstance(direction, Sequence) and not isinstance(direction, str):
        return [str(getattr(d, "name", d)) for d in direction], None
    return [str(getattr(direction, "name", direction))], None


def values_of(returned: Any, directions: list[str], names: list[str] | None) -> list[float]:
    """What a job returned, as the study's values (one line on anything else)."""
    if names is not None:
        if not isinstance(returned, Mapping) or any(n not in returned for n in names):
            raise ValueError(f"the task must return a dict with {names} (hydra.sweeper.direction), got {returned!r}")
        return [float(returned[n]) for n in names]
    if isinstance(returned, Mapping):
        raise ValueError(
            f"the task returned a dict {sorted(returned)}: name the metrics to optimise in hydra.sweeper.direction, "
            "e.g. {loss: minimize}"
        )
    items = list(returned) if isinstance(returned, (list, tuple)) or OmegaConf.is_list(returned) else [returned]
    if len(items) != len(directions):
        raise ValueError(f"the task returned {len(items)} values for {len(directions)} directions: {returned!r}")
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        raise ValueError(f"the task must return float-castable values, got {returned!r}") from None


class OneLine(ConfigError, CompactHydraException):
    """A :class:`ConfigError` that Hydra prints as its one line."""


class Optuna5SweeperImpl:
    def __init__(
        self,
        sampler: Any,
        direction: Any = "minimize",
        storage: Any = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 2,
        max_failure_rate: float = 0.0,
        params: DictConfig | None = None,
        custom_search_space: str | None = None,
    ) -> None:
        if n_jobs < 1 or n_trials < 0:
            allowed = "allowed: n_jobs >= 1, n_trials >= 0"
            raise ConfigError("hydra.sweeper", f"n_jobs {n_jobs}, n_trials {n_trials}; {allowed}")
        self.sampler, self.direction, self.storage, self.study_name = sampler, direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = params or {}
        self.extend = get_method(custom_search_space) if custom_search_space else None
        self.config: DictConfig | None = None
        self.launcher = None
        self.job_idx = 0
        self.to_go = n_trials
        self.failures = FailureRate("hydra.sweeper.max_failure_rate", max_failure_rate)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _study(self, dists: dict[str, Any]) -> tuple[optuna.Study, list[str] | None]:
        sampler = make_sampler(self.sampler, dists, "hydra.sweeper.sampler")
        size = grid_size(dists) if isinstance(sampler, optuna.samplers.GridSampler) else None
        if size is not None and size < self.n_trials:
            log.info("the grid has %d points: n_trials %d -> %d", size, self.n_trials, size)
            self.n_trials = size
        storage = self.storage
        if isinstance(storage, DictConfig) and "_target_" in storage:
            storage = instantiate(storage)  # e.g. an RDBStorage with heartbeat_interval
        directions, names = directions_of(self.direction)
        study = optuna.create_study(
            study_name=self.study_name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
        )
        if names is not None:
            study.set_metric_names(names)
        log.info("study %s, sampler %s, directions %s", study.study_name, type(sampler).__name__, directions)
        return study, names

    def _overrides(self, trial: optuna.Trial, space: Space) -> list[str]:
        for key, dist in space.dists.items():
            suggest(trial, key, dist)
        for key, line in space.fixed.items():
            if not key.startswith("~"):
                trial.set_user_attr(key, line.partition("=")[2])
        if self.extend is not None:
            self.extend(self.config, trial)
        overlap = set(trial.params) & set(space.fixed)
        if overlap:
            raise ConfigError("hydra.sweeper.custom_search_space", f"suggests fixed keys {sorted(overlap)}")
        # a suggested value is quoted where Hydra's grammar needs it ('a,b' is a sweep unquoted); a fixed one is
        # the command line's text, already in that grammar
        return [*(override_line(k, v) for k, v in trial.params.items()), *space.lines()]

    def space(self, arguments: list[str]) -> Space:
        """``hydra.sweeper.params``, then the command line (search/study/space.py)."""
        return search_space(self.params, arguments)

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        try:
            self.searched = self.space(arguments)
            study, names = self._study(self.searched.dists)
        except ConfigError as exc:  # Hydra prints a sweeper's other errors with their traceback
            raise OneLine(exc.key, exc.message) from None
        self.directions, self.names = [d.name.lower() for d in study.directions], names
        self.to_go = self.n_trials
        self.job_idx = run_loop(study, self.launcher, self, self.job_idx)
        self._results(study, names)

    # the loop's hooks (_loop.py): n_trials per run, every ask stored, a job's return value told
    def left(self, study: optuna.Study) -> int | None:
        return min(self.n_jobs, self.to_go) if self.to_go > 0 else None

    def propose(self, study: optuna.Study, n: int) -> list[Launch]:
        self.to_go -= n
        trials = [study.ask() for _ in range(n)]
        return [Launch(t, self._overrides(t, self.searched)) for t in trials]

    def told(self, study: optuna.Study, launch: Launch, ret: Any) -> None:
        try:
            values = values_of(job_value(ret), self.directions, self.names)
        except Exception as exc:  # the job raised, or returned something unusable
            tell_past_stop(study, launch.trial, state=optuna.trial.TrialState.FAIL)
            log.warning("trial %d failed: %s: %s", launch.trial.number, type(exc).__name__, exc)
            self.failures.add(True, (exc, ret))
            return
        self.failures.add(False)
        tell_past_stop(study, launch.trial, values)

    def after_batch(self, study: optuna.Study, batch: list[Launch]) -> bool:
        if self.failures.exceeded():
            log.error("%s: stopping the sweep", self.failures)
            exc, ret = self.failures.errors[0]
            if not isinstance(ret, BaseException):
                ret.return_value  # noqa: B018 - raises the failed job's own error, with its traceback
            raise exc  # the jobs ran, but what they returned is unusable
        return False

    def _results(self, study: optuna.Study, names: list[str] | None) -> None:
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            log.error("no trial completed: nothing to report")
            results: dict[str, Any] = {"name": "optuna", "best_params": None, "best_value": None}
        elif len(study.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("best value %s with %s", best.value, best.params)
        else:
            front = study.best_trials
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in front]}
            log.info("%d Pareto-optimal trials", len(front))
        if names is not None:
            results["metric_names"] = names
        OmegaConf.save(OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")
