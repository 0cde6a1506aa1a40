"""The infersearch sweeper: opens the study, queues the warm start, says what this device refuses, runs the
shared loop (_loop.py) with its hooks (_hooks.py), then confirms the front, writes the report, exports the
recommendation, logs the study to W&B and exits with the run's status.

Hydra's plugin scan skips modules whose name starts with ``_``: this one, with torch and the search code
behind it, is imported only when a sweep with this sweeper starts (sweeper.py)."""

from __future__ import annotations

import itertools
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import CategoricalDistribution

from hydra_plugins.infersearch_sweeper._hooks import InfersearchHooks, measured_count
from hydra_plugins.infersearch_sweeper._loop import run_loop
from infersearch.config import StudyConfig, with_metric
from infersearch.core.errors import ConfigError
from infersearch.core.secrets import mask_url
from infersearch.report.files import summary_text, write_report
from infersearch.report.tracking import Tracker
from infersearch.study.confirm import confirm_front
from infersearch.study.export import export_trial
from infersearch.study.outcome import EXIT_OK, Outcome, check_model, conclude
from infersearch.study.pareto import front
from infersearch.study.proposals import Proposals
from infersearch.study.space import Space, grid, grid_size, search_space
from infersearch.study.storage import open_study, storage_url
from infersearch.study.textfile import write_sweep_metrics
from infersearch.study.warm_start import warm_start_trials
from infersearch.trial.baseline import baseline_key, load_task
from infersearch.trial.evaluate import check

log = logging.getLogger(__name__)


class InfersearchSweeperImpl:
    def __init__(self, max_reuse_streak: int = 100) -> None:
        self.max_reuse_streak = max_reuse_streak
        self.config: DictConfig | None = None
        self.launcher = None
        self.tracker: Tracker | None = None
        self.job_idx = 0
        self.proposals: Proposals | None = None
        self.refusals: dict[tuple, ConfigError | None] = {}
        self.generation = False  # the model is a language model (set once the task is loaded)
        self.began = time.monotonic()  # the whole run, for the textfile's duration
        self.started = (self.began, 0)  # when this sweep's trials began, and the measured trials then

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        HydraConfig.instance().set_config(config)  # lets ${hydra:...} (the default study.name) resolve here
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        try:
            outcome = self._sweep(arguments)
        except ConfigError as exc:
            log.error("%s", exc)
            self._textfile(Outcome(2, str(exc)))
            sys.exit(2)
        self._textfile(outcome)
        if outcome.code != EXIT_OK:
            log.error("exit status %d: %s", outcome.code, outcome.message)
            sys.exit(outcome.code)
        return outcome

    def _textfile(self, outcome: Outcome) -> None:
        """The run's exit status for Prometheus (search/study/textfile.py); a failure to write it is said,
        never the run's failure."""
        st = self.config.study
        try:
            if st.textfile_dir is None:
                return
            took = time.monotonic() - self.began
            path = write_sweep_metrics(Path(st.textfile_dir), st.name, outcome.code, took, outcome.recommendation)
            log.info("exit status %d written for Prometheus to %s", outcome.code, path)
        except Exception as exc:  # noqa: BLE001 - e.g. an unresolvable study.name or a read-only folder
            log.warning("could not write the textfile-collector file: %s: %s", type(exc).__name__, exc)

    def _sweep(self, arguments: list[str]) -> Outcome:
        assert self.config is not None and self.launcher is not None
        space = self.space(arguments)
        dists = space.dists
        if not dists:
            raise ConfigError("space", "the search space is empty: pick space=default or give choice(...) overrides")
        task = load_task(self.config.model)
        self.generation = task.generation
        st = with_metric(
            OmegaConf.to_object(self.config.study), task.metric.name, task.metric.direction, task.generation
        )
        study = open_study(st, dists)
        check_model(study, baseline_key(task), st)
        metric = {"name": task.metric.name, "direction": task.metric.direction, "generation": task.generation}
        study.set_user_attr("metric", metric)  # for reports
        self.tracker = Tracker(OmegaConf.to_object(self.config.tracking), st)
        study.set_user_attr("space", {k: repr(d) for k, d in dists.items()})
        self.proposals = Proposals(st, dists)
        if st.warm_start and not study.get_trials(deepcopy=False):
            self._warm_start(dists)
        log.info(
            "study %r in %s: %d measured trials so far, budget %d",
            st.name,
            mask_url(storage_url(st)),
            measured_count(study),
            st.n_trials,
        )
        self.started = (time.monotonic(), measured_count(study))  # for the trial lines' progress
        self._report_refusals(dists)
        self._trials(study, st, dists, space.lines())
        self._confirm(study, st)
        summary = write_report(study, st)
        log.info("\n%s", summary_text(summary, st))
        model_dir = None
        if st.export and summary.recommended is not None:
            try:
                rec = summary.recommended
                model_dir = export_trial(rec, Path(st.output_dir), summary.figures.get(str(rec.number)))
                log.info("recommended model exported to %s (manifest.json says how to load it)", model_dir)
            except Exception as exc:  # the study and its report stand; say why the file is missing
                log.error("could not export the recommended model: %s: %s", type(exc).__name__, exc)
        self.tracker.log_study(study, summary, model_dir)
        return conclude(study, summary, st)

    def space(self, arguments: list[str]) -> Space:
        """The ``space`` config group, then the command line (search/study/space.py)."""
        return search_space(OmegaConf.to_container(self.config.space, resolve=True) or {}, arguments)

    def _trials(self, study, st: StudyConfig, dists, fixed) -> None:
        """Batches of trials (the shared loop, _loop.py, with this sweeper's hooks, _hooks.py) until the budget,
        the time, the space or the sampler's new ideas run out."""
        hooks = InfersearchHooks(
            st, dists, fixed, self.proposals, self.refusal, self.tracker, self.max_reuse_streak, self.started
        )
        self.job_idx = run_loop(study, self.launcher, hooks, self.job_idx)
        self.proposals.store_tally(study)

    def _confirm(self, study, st: StudyConfig) -> None:
        """Re-time the front and the previous run's recommendation side by side (search/study/confirm.py),
        with W&B's service stopped: it is not needed again until the study run is logged."""
        for key in ("confirmation", "confirmation_context"):  # this run's figures only, never a stale run's
            study.set_user_attr(key, {})
        if not (st.confirm and front(study)):
            return
        previous = (study.user_attrs.get("recommendations") or [{}])[-1].get("trial")
        self.tracker.pause()
        try:
            measure = OmegaConf.to_object(self.config.measure)
            confirm_front(study, st.objectives, measure, self.config.cache_dir, previous, bool(self.config.isolate))
        except Exception as exc:  # the first measurements stand; say why they were not confirmed
            log.warning("could not confirm the front: %s: %s", type(exc).__name__, exc)

    def refusal(self, params: dict[str, Any]) -> ConfigError | None:
        """What the job would refuse before doing any work (device, precision, bit-width, ranges)."""
        key = tuple(sorted(params.items()))
        if key not in self.refusals:
            self.refusals[key] = self._refusal(params)
        return self.refusals[key]

    def _refusal(self, params: dict[str, Any]) -> ConfigError | None:
        cfg = self.config.copy()
        with open_dict(cfg):
            del cfg["hydra"]
            for key, value in params.items():
                OmegaConf.update(cfg, key, value, merge=True)
        try:
            check(OmegaConf.to_object(cfg), self.generation)
        except ConfigError as exc:
            return exc
        return None

    def _warm_start(self, dists) -> None:
        """Queue the fast corner once per engine (search/study/warm_start.py) for the sampler. Several
        workers on a fresh study may all do this: a seed another worker measured is repeated, not measured."""
        defaults = {k: v for k in dists if (v := OmegaConf.select(self.config, k)) is not None}
        seeds = [self._runnable(seed, dists) for seed in warm_start_trials(dists, defaults)]
        for params in seeds:
            self.proposals.enqueue(params, {"warm_start": True})
        if seeds:
            log.info("warm start: %d seed configurations queued before the sampler's own", len(seeds))

    def _runnable(self, seed: dict[str, Any], dists) -> dict[str, Any]:
        """The seed with its free categorical keys (quant.scheme when the configured one is not in the space)
        set to the first values the device and engine accept; as it is when there are none or none pass."""
        free = {k: d.choices for k, d in dists.items() if k not in seed and isinstance(d, CategoricalDistribution)}
        if not free:
            return seed
        combos = (seed | dict(zip(free, combo)) for combo in itertools.product(*free.values()))
        return next((params for params in combos if self.refusal(params) is None), seed)

    def _report_refusals(self, dists) -> None:
        """Say before the search starts which configurations this device cannot run."""
        values = grid(dists)
        if values is None or (size := grid_size(dists)) > 10_000:
            return
        reasons: dict[str, int] = {}
        for combo in itertools.product(*values.values()):
            exc = self.refusal(dict(zip(values, combo)))
            if exc is not None:
                reasons[str(exc)] = reasons.get(str(exc), 0) + 1
        for reason, n in reasons.items():
            log.warning("refused on this device, %d of %d configurations: %s", n, size, reason)
