"""Asks Optuna for ``study.n_jobs`` trials, launches them as Hydra jobs through the
configured launcher, and tells Optuna each result; at the end writes the report.

Hydra's plugin scan skips modules whose name starts with ``_``: this one, with torch and the search code
behind it, is imported only when a sweep with this sweeper starts (sweeper.py)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from infersearch.baseline import baseline_key, load_task
from infersearch.config import StudyConfig, with_metric
from infersearch.errors import ConfigError
from infersearch.optuna_compat import heartbeat, pop_waiting, start_trial, suggest
from infersearch.secrets import mask_url
from infersearch.study.confirm import confirm_front
from infersearch.study.export import export_trial
from infersearch.study.job import TRIAL_KEY, task_overrides
from infersearch.study.outcome import EXIT_OK, Outcome, check_model, conclude
from infersearch.study.pareto import feasible, front
from infersearch.study.proposals import Proposals, evaluated
from infersearch.study.record import (
    FINISHED,
    canonical,
    counts,
    failure_record,
    find_previous,
    in_flight,
    tell,
)
from infersearch.study.report import summary_text, write_report
from infersearch.study.space import build_space, grid, grid_size, override_line
from infersearch.study.storage import directions, open_study, storage_url
from infersearch.study.textfile import write_sweep_metrics
from infersearch.study.warm_start import warm_start_trials
from infersearch.tracking import Tracker
from infersearch.trial import check

log = logging.getLogger(__name__)


@dataclass
class Launch:
    stored: optuna.Trial  # the study's trial
    proposal: optuna.Trial | None  # the sampler's (search/study/proposals.py); None for a queued retry


def measured_count(study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if counts(t))


def over_budget(study, trial, n_trials: int) -> bool:
    """Exact budget across workers: a trial may start only if the measured trials plus the running
    trials asked before it (lower numbers, any worker) leave it a place."""
    earlier = [t for t in in_flight(study) if t.number < trial.number]
    return measured_count(study) + len(earlier) >= n_trials


def job_error(ret: Any) -> BaseException:
    """Why a launched job left its trial untold: its exception, or that it returned without telling."""
    if isinstance(ret, BaseException):
        return ret
    if ret.status == JobStatus.FAILED:
        return ret._return_value
    return RuntimeError("the job returned without recording its trial")


def clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def objective_text(trial, study_cfg: StudyConfig) -> str:
    return " ".join(f"{o.metric}={v:.4g}" for o, v in zip(study_cfg.objectives, trial.values))


def progress(study, study_cfg: StudyConfig, started: float, measured_before: int) -> str:
    """Budget used, time spent and left (at this run's pace so far), and the best so far: the feasible
    front member best on the study's last objective (the fastest, with the default objectives)."""
    done, elapsed = measured_count(study), time.monotonic() - started
    parts = [f"{done}/{study_cfg.n_trials} measured", f"{clock(elapsed)} elapsed"]
    if done < study_cfg.n_trials and done > measured_before:
        parts.append(f"~{clock(elapsed / (done - measured_before) * (study_cfg.n_trials - done))} left")
    members = front(study)  # feasible trials only
    if members:
        sign = -1 if directions(study_cfg)[-1] == "maximize" else 1
        parts.append("best: " + objective_text(min(members, key=lambda t: sign * t.values[-1]), study_cfg))
    return ", ".join(parts)


def trial_line(frozen, study_cfg: StudyConfig, on_front: bool, note: str = "", status: str = "") -> str:
    """One line per trial: ``trial N (status): params -> objectives``, or its state and error."""
    head = f"trial {frozen.number}" + (f" ({status})" if status else "")
    params = " ".join(f"{k}={v}" for k, v in frozen.params.items())
    if frozen.state == TrialState.COMPLETE:
        feas = "" if feasible(frozen) else " infeasible"
        return f"{head}: {params} -> {objective_text(frozen, study_cfg)}{feas}{' [front]' if on_front else ''}{note}"
    return f"{head}: {params} -> {frozen.state.name} {frozen.user_attrs.get('error', '')}{note}"


class InfersearchSweeperImpl:
    def __init__(self, max_reuse_streak: int = 100) -> None:
        self.max_reuse_streak = max_reuse_streak
        self.config: DictConfig | None = None
        self.launcher = None
        self.tracker: Tracker | None = None
        self.job_idx = 0
        self.proposals: Proposals | None = None
        self.said: set[Any] = set()
        self.refusals: dict[tuple, ConfigError | None] = {}
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
        task = load_task(self.config.model)
        st = with_metric(OmegaConf.to_object(self.config.study), task.metric.name, task.metric.direction)
        space_cfg = OmegaConf.to_container(self.config.space, resolve=True) or {}
        dists, fixed = build_space(space_cfg, arguments)
        if not dists:
            raise ConfigError("space", "the search space is empty: pick space=default or give choice(...) overrides")
        study = open_study(st, dists)
        check_model(study, baseline_key(task), st)
        study.set_user_attr("metric", {"name": task.metric.name, "direction": task.metric.direction})  # for reports
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
        self._trials(study, st, dists, fixed)
        self._confirm(study, st)
        summary = write_report(study, st)
        log.info("\n%s", summary_text(summary, st))
        model_dir = None
        if st.export and summary.recommended is not None:
            try:
                model_dir = export_trial(summary.recommended, Path(st.output_dir))
                log.info("recommended model exported to %s (manifest.json says how to load it)", model_dir)
            except Exception as exc:  # the study and its report stand; say why the file is missing
                log.error("could not export the recommended model: %s: %s", type(exc).__name__, exc)
        self.tracker.log_study(study, summary, model_dir)
        return conclude(study, summary, st)

    def _trials(self, study, st: StudyConfig, dists, fixed) -> None:
        """Batches of trials until the budget, the time, the space or the sampler's new ideas run out."""
        size, streak = grid_size(dists), 0
        deadline = None if st.timeout is None else time.monotonic() + st.timeout
        while True:
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, then retried once
            finished = measured_count(study)
            if finished >= st.n_trials:
                break
            if deadline is not None and time.monotonic() >= deadline:
                log.info("study.timeout of %ss reached: no new trials", st.timeout)
                break
            running = len(in_flight(study))  # other workers' trials: they may still fill the budget
            if finished + running >= st.n_trials:
                time.sleep(0.5)
                continue
            done = finished + running
            self.proposals.sync(study)
            if size is not None and len(evaluated(self.proposals.study)) >= size:
                log.info("every one of the %d configurations of the space has been evaluated", size)
                break
            if streak >= self.max_reuse_streak:
                log.info("the sampler proposed %d evaluated configurations in a row: stopping", streak)
                break
            streak = self._batch(study, st, dists, fixed, min(st.n_jobs, st.n_trials - done), streak)
            if self._failing(study, st):
                log.error("more than %.0f%% of measured trials failed: stopping the sweep", 100 * st.max_failure_rate)
                break
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
            confirm_front(study, measure, self.config.cache_dir, previous, bool(self.config.isolate))
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
            check(OmegaConf.to_object(cfg))
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

    def _batch(self, study, st, dists, fixed, n, streak) -> int:
        """Ask up to ``n`` trials, launch the new configurations together, tell every outcome; the streak
        of proposals that launched nothing (repeated, refused, in flight) goes on or restarts."""
        launch, dups, settled = self._ask(study, st, dists, n)
        if launch:
            self._launch(study, st, fixed, launch)
        trials = study.get_trials(deepcopy=False)
        for proposal, first in dups:
            self.proposals.repeat(proposal, trials[first.stored.number])
        return 0 if launch else streak + settled

    def _ask(self, study, st, dists, n) -> tuple[list[Launch], list, int]:
        """(trials to launch, (proposal, launch) pairs repeating one within this batch, proposals settled)."""
        launch, dups, pending, settled = [], [], {}, 0
        for _ in range(n):
            proposal, stored = None, pop_waiting(study)  # a dead worker's trial, queued again by the heartbeat
            if stored is None:
                proposal = self.proposals.ask(study)
                key = tuple(sorted(canonical(proposal.params).items()))
                if key in pending:  # told the launched one's outcome once it has one
                    dups.append((proposal, pending[key]))
                    continue
                if self._settle(study, st, proposal):
                    settled += 1
                    continue
                stored = start_trial(study, proposal.params, dists, dict(proposal.user_attrs))
            else:
                for name, dist in dists.items():
                    suggest(stored, name, dist)
            if over_budget(study, stored, st.n_trials):  # another worker took the last place meanwhile
                tell(study, stored, failure_record(RuntimeError("budget reached"), [], {"over_budget": True}, True))
                if proposal is not None:
                    self.proposals.drop(proposal)
                break
            pending[tuple(sorted(canonical(stored.params).items()))] = item = Launch(stored, proposal)
            launch.append(item)
        return launch, dups, settled

    def _settle(self, study, st, proposal) -> bool:
        """Tell the sampler, without launching, a configuration measured before (repeated), one this device
        refuses, or one another worker is measuring (in flight); True when it was one of those."""
        params = " ".join(f"{k}={v}" for k, v in proposal.params.items())
        previous = find_previous(study, proposal.params)
        if previous is not None:
            self.proposals.repeat(proposal, previous)
            if self._first(previous.number):  # the sampler re-proposes a set many times in a row: say it once
                log.info("proposed again: %s -> trial %d's outcome, not measured again", params, previous.number)
            return True
        refused = self.refusal(proposal.params)
        if refused is not None:
            self.proposals.refuse(proposal, "refused")
            if self._first(str(refused)):
                log.info("refused, not launched: %s -> %s (said once per reason)", params, refused)
            return True
        if in_flight(study, proposal.params):
            self.proposals.refuse(proposal, "in_flight")
            return True
        return False

    def _first(self, key: Any) -> bool:
        """Whether ``key`` (a repeated trial, a refusal's reason) is said for the first time in this run."""
        first = key not in self.said
        self.said.add(key)
        return first

    def _launch(self, study, st, fixed, launch: list[Launch]) -> None:
        """The trials as Hydra jobs through the launcher, with Optuna's heartbeats while they run. Each job
        tells its own trial (search/study/job.py); one that could not (its process died, the launcher
        failed) is told failed here."""
        overrides = [
            [*fixed, *(override_line(k, v) for k, v in t.stored.params.items()), f"{TRIAL_KEY}={t.stored.number}"]
            for t in launch
        ]
        with contextlib.ExitStack() as beats:
            for t in launch:
                beats.enter_context(heartbeat(t.stored, study))
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            except Exception as exc:  # a launcher worker died (segfault in a joblib worker, lost node)
                returns = [exc] * len(launch)
        self.job_idx += len(launch)
        for item, ov, ret in zip(launch, overrides, returns):
            frozen = study.get_trials(deepcopy=False)[item.stored.number]
            if frozen.state == TrialState.RUNNING:
                frozen = tell(study, item.stored, failure_record(job_error(ret), task_overrides(ov)))
            if item.proposal is not None:
                self.proposals.outcome(item.proposal, frozen)
            on_front = frozen.number in {t.number for t in study.best_trials}
            log.info("%s", self._line(study, st, frozen, on_front))
            self.tracker.log_trial(frozen, on_front)

    def _line(self, study, st: StudyConfig, frozen, on_front: bool, note: str = "") -> str:
        return trial_line(frozen, st, on_front, note, progress(study, st, *self.started))

    @staticmethod
    def _failing(study, st: StudyConfig) -> bool:
        measured = [t for t in study.get_trials(deepcopy=False) if counts(t)]
        failed = sum(t.state == TrialState.FAIL for t in measured)
        return len(measured) >= 5 and failed / len(measured) > st.max_failure_rate
