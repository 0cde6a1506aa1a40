"""The ``optuna5`` sweeper: the shared loop (_loop.py) with hooks that ask the stored study for ``n_jobs``
trials at a time (``n_trials`` per run, as hydra-optuna-sweeper), launch them as Hydra jobs through the
configured launcher, tell Optuna what each returned (a float, a list of floats, or a dict of named
metrics), and write ``optimization_results.yaml`` as hydra-optuna-sweeper did.

The search space comes from ``hydra.sweeper.params`` and the command line, in Hydra's sweep grammar,
read as Hydra reads it: ``range(1,3)`` is 1 and 2, as in a grid sweep (hydra-optuna-sweeper included 3).
Heartbeats, stale trials of dead workers failed and retried (Optuna's ``ask`` takes the queued retry
first): the loop's, as for infersearch's own sweeper."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.infersearch_sweeper._loop import Launch, job_value, run_loop
from infersearch.optuna_compat import suggest
from infersearch.study.space import override_line

log = logging.getLogger(__name__)


def _choices(override: Override) -> CategoricalDistribution:
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    for v in values:
        if not isinstance(v, (str, int, float, bool, type(None))):
            raise ValueError(f"{override.get_key_element()}: a choice takes str, int, float, bool or null, got {v!r}")
    return CategoricalDistribution(values)


def _range(override: Override, value: RangeSweep) -> BaseDistribution:
    """Hydra's range: ``stop`` excluded, as Python's."""
    if value.shuffle or value.step is None or value.step <= 0:
        return _choices(override)
    start, stop, step = value.start, value.stop, value.step
    n = math.ceil((stop - start) / step)
    if n < 1:
        raise ValueError(f"{override.get_key_element()}: {override.input_line} is empty")
    last = start + (n - 1) * step
    if any(isinstance(x, float) for x in (start, stop, step)):
        return FloatDistribution(float(start), float(last), step=float(step))
    return IntDistribution(int(start), int(last), step=int(step))


def distribution(override: Override) -> BaseDistribution | str:
    """The Optuna distribution of a sweep override, or the fixed value of a plain one."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return _choices(override)
    if isinstance(value, RangeSweep):
        return _range(override, value)
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a sweep the optuna5 sweeper supports (choice, range, interval)")


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str], list[str]]:
    """(distributions, fixed values, deletions) from overrides; a later override of a key wins."""
    dists: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    deletions: list[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_delete():
            deletions.append(override.input_line)
            continue
        key = override.get_key_element()
        dists.pop(key, None)
        fixed.pop(key, None)
        value = distribution(override)
        (dists if isinstance(value, BaseDistribution) else fixed)[key] = value
    return dists, fixed, deletions


def grid_choices(dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
        n = int(round((dist.high - dist.low) / dist.step)) + 1
        return [dist.low + i * dist.step for i in range(n)]
    raise ValueError("the grid sampler needs discrete parameters: choice(...) or range(...)")


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


class GridExhausted(RuntimeError):
    pass


def _tell(study: optuna.Study, trial: optuna.Trial, values: list[float]) -> None:
    """Tell the values; the grid sampler's ``study.stop()`` once the grid is covered is not an error here
    (the trial is stored before it raises, and the budget was already cut to the grid's size)."""
    try:
        study.tell(trial, values)
    except RuntimeError as exc:
        if "Study.stop" in str(exc):
            raise GridExhausted(str(exc)) from exc
        raise


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
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate: {max_failure_rate} is out of range; allowed: 0 to 1")
        if n_jobs < 1 or n_trials < 0:
            raise ValueError(f"hydra.sweeper: n_jobs must be >= 1 and n_trials >= 0, got {n_jobs}, {n_trials}")
        self.sampler, self.direction, self.storage, self.study_name = sampler, direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = params or {}
        self.extend = get_method(custom_search_space) if custom_search_space else None
        self.config: DictConfig | None = None
        self.launcher = None
        self.job_idx = 0
        self.to_go = n_trials
        self.failures: list[tuple[Exception, Any]] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _study(self, dists: dict[str, BaseDistribution]) -> tuple[optuna.Study, list[str] | None]:
        sampler = self.sampler
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            grid = {k: grid_choices(d) for k, d in dists.items()}
            sampler = sampler(grid)
            size = math.prod(len(v) for v in grid.values())
            if size < self.n_trials:
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

    def _overrides(self, trial: optuna.Trial, dists, fixed: dict[str, str], deletions: list[str]) -> list[str]:
        for key, dist in dists.items():
            suggest(trial, key, dist)
        for key, value in fixed.items():
            trial.set_user_attr(key, value)
        if self.extend is not None:
            self.extend(self.config, trial)
        overlap = set(trial.params) & set(fixed)
        if overlap:
            raise ValueError(f"fixed values and search space overlap: {sorted(overlap)}")
        # a suggested value is quoted where Hydra's grammar needs it ('a,b' is a sweep unquoted); a fixed one is
        # the command line's text, already in that grammar
        return [*(override_line(k, v) for k, v in trial.params.items()), *(f"{k}={v}" for k, v in fixed.items()),
                *deletions]  # fmt: skip

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        dists, fixed, deletions = search_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        study, names = self._study(dists)
        self.space = (dists, fixed, deletions)
        self.directions, self.names = [d.name.lower() for d in study.directions], names
        self.to_go = self.n_trials
        self.job_idx = run_loop(study, self.launcher, self, self.job_idx)
        self._results(study, names)

    # the loop's hooks (_loop.py): n_trials per run, every ask stored, a job's return value told
    def left(self, study: optuna.Study) -> int | None:
        return min(self.n_jobs, self.to_go) if self.to_go > 0 else None

    def propose(self, study: optuna.Study, n: int) -> list[Launch]:
        self.to_go -= n
        self.failures = []
        trials = [study.ask() for _ in range(n)]
        return [Launch(t, self._overrides(t, *self.space)) for t in trials]

    def told(self, study: optuna.Study, launch: Launch, ret: Any) -> None:
        try:
            values = values_of(job_value(ret), self.directions, self.names)
        except Exception as exc:  # the job raised, or returned something unusable
            study.tell(launch.trial, state=optuna.trial.TrialState.FAIL)
            log.warning("trial %d failed: %s: %s", launch.trial.number, type(exc).__name__, exc)
            self.failures.append((exc, ret))
            return
        with contextlib.suppress(GridExhausted):
            _tell(study, launch.trial, values)

    def after_batch(self, study: optuna.Study, batch: list[Launch]) -> bool:
        if batch and len(self.failures) / len(batch) > self.max_failure_rate:
            log.error("%d of %d trials failed (hydra.sweeper.max_failure_rate=%s)", len(self.failures), len(batch),
                      self.max_failure_rate)  # fmt: skip
            exc, ret = self.failures[0]
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
