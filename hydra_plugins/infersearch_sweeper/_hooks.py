"""infersearch's hooks on the shared loop (_loop.py).

- The budget is the study's, exact across workers: a trial starts only if the measured trials plus the
  running ones stored before it leave it a place; the study.timeout, a covered finite space and a long run
  of proposals that launched nothing also end the sweep.
- The sampler asks its own study (search/study/proposals.py): a configuration measured before, refused on
  this device, or running in another worker is told to it without a launch and is never stored.
- A dead worker's queued retry is launched first.
- Each job tells its own trial (search/study/job.py); one that could not is told failed here. Every
  launched trial gets a line with the sweep's progress and a W&B run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.infersearch_sweeper._loop import Launch, job_value
from infersearch.config import StudyConfig
from infersearch.core.errors import ConfigError
from infersearch.core.optuna_compat import pop_waiting, start_trial, suggest
from infersearch.report.tracking import Tracker
from infersearch.study.attrs import TrialAttrs, attrs_of
from infersearch.study.job import TRIAL_KEY, task_overrides
from infersearch.study.pareto import feasible, front
from infersearch.study.proposals import Proposals, evaluated
from infersearch.study.record import FINISHED, canonical, counts, failure_record, find_previous, in_flight, tell
from infersearch.study.space import grid_size, override_line
from infersearch.study.storage import directions
from infersearch.study.sweep import FailureRate

log = logging.getLogger(__name__)


def measured_count(study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if counts(t))


def over_budget(study, trial, n_trials: int) -> bool:
    """A trial may start only if the measured trials plus the running trials stored before it (lower
    numbers, any worker) leave it a place."""
    earlier = [t for t in in_flight(study) if t.number < trial.number]
    return measured_count(study) + len(earlier) >= n_trials


def job_error(ret: Any) -> BaseException:
    """Why a launched job left its trial untold: its exception, or that it returned without telling."""
    try:
        job_value(ret)
    except BaseException as exc:  # noqa: BLE001 - the job's own error is the trial's
        return exc
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


def trial_line(frozen, study_cfg: StudyConfig, on_front: bool, status: str = "") -> str:
    """One line per trial: ``trial N (status): params -> objectives``, or its state and error."""
    head = f"trial {frozen.number}" + (f" ({status})" if status else "")
    params = " ".join(f"{k}={v}" for k, v in frozen.params.items())
    if frozen.state == TrialState.COMPLETE:
        feas = "" if feasible(frozen) else " infeasible"
        m = attrs_of(frozen).metrics
        busy = (
            f" [disturbed: baseline at {m.get('machine_state', 0):.2f}x its anchor]"
            if m.get("machine_disturbed")
            else ""
        )
        return f"{head}: {params} -> {objective_text(frozen, study_cfg)}{feas}{busy}{' [front]' if on_front else ''}"
    return f"{head}: {params} -> {frozen.state.name} {attrs_of(frozen).error}"


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(canonical(params).items()))


@dataclass
class InfersearchHooks:
    st: StudyConfig
    dists: dict[str, Any]
    fixed: list[str]
    proposals: Proposals
    refusal: Callable[[dict[str, Any]], ConfigError | None]
    tracker: Tracker
    max_streak: int
    started: tuple[float, int]  # when this run's trials began, and the measured trials then
    streak: int = 0  # proposals in a row that launched nothing
    said: set[Any] = field(default_factory=set)
    dups: list[tuple[optuna.Trial, Launch]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.size = grid_size(self.dists)
        self.failures = FailureRate("study.max_failure_rate", self.st.max_failure_rate)
        self.deadline = None if self.st.timeout is None else time.monotonic() + self.st.timeout

    def left(self, study: optuna.Study) -> int | None:
        st, finished = self.st, measured_count(study)
        if finished >= st.n_trials:
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            log.info("study.timeout of %ss reached: no new trials", st.timeout)
            return None
        running = len(in_flight(study))  # other workers' trials: they may still fill the budget
        if finished + running >= st.n_trials:
            return 0
        self.proposals.sync(study)
        if self.size is not None and len(evaluated(self.proposals.study)) >= self.size:
            log.info("every one of the %d configurations of the space has been evaluated", self.size)
            return None
        if self.streak >= self.max_streak:
            log.info("the sampler proposed %d evaluated configurations in a row: stopping", self.streak)
            return None
        return min(st.n_jobs, st.n_trials - finished - running)

    def propose(self, study: optuna.Study, n: int) -> list[Launch]:
        launch: list[Launch] = []
        pending: dict[tuple, Launch] = {}
        for _ in range(n):
            proposal, stored = None, pop_waiting(study)  # a dead worker's trial, queued again by the heartbeat
            if stored is None:
                proposal = self.proposals.ask(study)
                if _key(proposal.params) in pending:  # told the launched one's outcome once it has one
                    self.dups.append((proposal, pending[_key(proposal.params)]))
                    continue
                if self._settle(study, proposal):
                    self.streak += 1
                    continue
                stored = start_trial(study, proposal.params, self.dists, dict(proposal.user_attrs))
            else:
                for name, dist in self.dists.items():
                    suggest(stored, name, dist)
            if over_budget(study, stored, self.st.n_trials):  # another worker took the last place meanwhile
                tell(
                    study,
                    stored,
                    failure_record(RuntimeError("budget reached"), [], TrialAttrs(over_budget=True), refused=True),
                )
                if proposal is not None:
                    self.proposals.drop(proposal)
                break
            params = [override_line(k, v) for k, v in stored.params.items()]
            pending[_key(stored.params)] = item = Launch(
                stored, [*self.fixed, *params, f"{TRIAL_KEY}={stored.number}"], proposal
            )
            launch.append(item)
        if launch:
            self.streak = 0
        return launch

    def _settle(self, study: optuna.Study, proposal: optuna.Trial) -> bool:
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

    def told(self, study: optuna.Study, launch: Launch, ret: Any) -> None:
        frozen: FrozenTrial = study.get_trials(deepcopy=False)[launch.trial.number]
        if frozen.state == TrialState.RUNNING:  # its job could not tell it
            frozen = tell(study, launch.trial, failure_record(job_error(ret), task_overrides(launch.overrides)))
        if launch.proposal is not None:
            self.proposals.outcome(launch.proposal, frozen)
        self.failures.add(frozen.state == TrialState.FAIL)
        on_front = frozen.number in {t.number for t in study.best_trials}
        log.info("%s", trial_line(frozen, self.st, on_front, progress(study, self.st, *self.started)))
        self.tracker.log_trial(frozen, on_front)

    def after_batch(self, study: optuna.Study, batch: list[Launch]) -> bool:
        trials = study.get_trials(deepcopy=False)
        for proposal, first in self.dups:
            self.proposals.repeat(proposal, trials[first.trial.number])
        self.dups.clear()
        if self.failures.exceeded():
            log.error("%s: stopping the sweep", self.failures)
            return True
        return False
