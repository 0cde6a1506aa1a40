"""The ask / launch / tell loop both sweepers run; what a sweeper does differently goes through its hooks.

What the loop guarantees for every app: trials of dead workers are failed once their heartbeat is stale
(storages with heartbeats: an ``RDBStorage`` with ``heartbeat_interval``), and queued again where the
storage's callback retries them;
every launched trial sends heartbeats while its job runs; a batch is launched together through the
configured launcher, and each of its outcomes is told before the next batch is asked for. The hooks say how
many trials may start now, propose them (stored and RUNNING, with their job's overrides), tell each job's
outcome, and whether to stop after a batch."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from hydra.core.utils import JobStatus

from infersearch.core.optuna_compat import heartbeat, heartbeat_enabled, quiet_heartbeat_warnings

WAIT_S = 0.5  # between looks at a study whose budget other workers' running trials may still fill


@dataclass
class Launch:
    trial: optuna.Trial  # stored and RUNNING
    overrides: list[str]
    proposal: Any = field(default=None)  # the sweeper's own note on it (infersearch: the sampler's trial)


class Hooks(Protocol):
    def left(self, study: optuna.Study) -> int | None:
        """Trials that may start now; 0: wait for other workers' running trials; None: the sweep is done."""

    def propose(self, study: optuna.Study, n: int) -> list[Launch]:
        """Up to ``n`` trials to launch together (fewer, or none, when proposals settle without a job)."""

    def told(self, study: optuna.Study, launch: Launch, ret: Any) -> None:
        """Tell the outcome of a launched job (its ``JobReturn``, or the exception the launcher raised)."""

    def after_batch(self, study: optuna.Study, batch: list[Launch]) -> bool:
        """True to stop the sweep now (e.g. too many failures)."""


def job_value(ret: Any) -> Any:
    """A launched job's return value, or its exception raised, without the "Error executing job with
    overrides" line Hydra's ``return_value`` writes to stderr (the trial's line says what failed)."""
    if isinstance(ret, BaseException):
        raise ret
    if ret.status == JobStatus.FAILED:
        raise ret._return_value
    return ret.return_value


def run_loop(study: optuna.Study, launcher: Any, hooks: Hooks, job_idx: int = 0) -> int:
    """Batches until the hooks say the sweep is done; returns the next job index."""
    quiet_heartbeat_warnings()
    while True:
        if heartbeat_enabled(study):
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, then retried once
        left = hooks.left(study)
        if left is None:
            return job_idx
        if left <= 0:
            time.sleep(WAIT_S)
            continue
        batch = hooks.propose(study, left)
        if batch:
            returns = _launch(study, launcher, batch, job_idx)
            job_idx += len(batch)
            for launch, ret in zip(batch, returns):
                hooks.told(study, launch, ret)
        if hooks.after_batch(study, batch):
            return job_idx


def _launch(study: optuna.Study, launcher: Any, batch: list[Launch], job_idx: int) -> list[Any]:
    """The batch as Hydra jobs, with Optuna's heartbeats while they run; a launcher that fails (a joblib
    worker's segfault, a lost node) gives its exception as every job's outcome."""
    with contextlib.ExitStack() as beats:
        for launch in batch:
            beats.enter_context(heartbeat(launch.trial, study))
        try:
            return list(launcher.launch([b.overrides for b in batch], initial_job_idx=job_idx))
        except Exception as exc:
            return [exc] * len(batch)
