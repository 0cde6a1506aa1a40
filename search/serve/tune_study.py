"""serve-tune's own Optuna study: one trial per serving setting, its goodput the value, everything measured in
its user attributes. It lives in SQLite under the tune's folder (``tune.db``), named after what decides the
measurements (artifact, SLO, ``tune.*`` except the port, machine), so a re-run with the same settings
continues where an interrupted one stopped instead of starting over.

A grid of at most ``tune.n_trials`` settings is measured whole, in grid order (each enqueued); a larger one
is searched by the project's TPE sampler (search/study/storage.py) for ``tune.n_trials`` distinct settings.
A setting the sampler proposes again is told its earlier goodput without being served again."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

from infersearch.config import SamplerName, StudyConfig, TuneConfig
from infersearch.core.errors import ConfigError
from infersearch.serve.settings import TUNED
from infersearch.study.storage import make_sampler, make_storage, quiet_design_warnings

log = logging.getLogger("infersearch.serve")
REPEATS_PER_TRIAL = 5  # the sampler may re-propose measured settings: at most this many proposals per new one


def study_name(tu: TuneConfig, identity: dict[str, Any]) -> str:
    """What decides the measurements, hashed: the same artifact, SLO, machine and ``tune.*`` (but the port and
    the folder) give the same study, so a re-run continues it."""
    keys = {k: v for k, v in vars(tu).items() if k not in ("port", "dir", "resume", "top")}
    text = json.dumps({**identity, **keys}, sort_keys=True, default=str)
    return "serve-tune-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _key(setting: dict[str, Any]) -> tuple:
    return tuple(setting[k] for k in TUNED)


@dataclass
class TuneSearch:
    """Which setting to measure next, and what was measured (this run and interrupted ones before it)."""

    study: optuna.Study
    grid: list[dict[str, Any]]
    n_trials: int
    path: Path

    @property
    def exhaustive(self) -> bool:
        return len(self.grid) <= self.n_trials

    @property
    def dists(self) -> dict[str, CategoricalDistribution]:
        return {k: CategoricalDistribution(sorted({g[k] for g in self.grid})) for k in TUNED}

    def measured(self) -> list[FrozenTrial]:
        """The completed trials that served their setting (not the sampler's repeats), first one per setting."""
        seen: dict[tuple, FrozenTrial] = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if "row" in t.user_attrs:
                seen.setdefault(_key(t.params), t)
        return list(seen.values())

    @property
    def target_rps(self) -> float | None:
        return self.study.user_attrs.get("target_rps")

    def ask(self) -> tuple[Trial, dict[str, Any]] | None:
        """The next setting to serve, or None when the budget is measured (or the sampler only repeats)."""
        done = {_key(t.params): t for t in self.measured()}
        budget = len(self.grid) if self.exhaustive else self.n_trials
        for _ in range(REPEATS_PER_TRIAL):
            if len(done) >= budget:
                return None
            if self.exhaustive:
                nxt = next(g for g in self.grid if _key(g) not in done)
                self.study.enqueue_trial(nxt)
            trial = self.study.ask(self.dists)
            setting = {k: trial.params[k] for k in TUNED}
            if _key(setting) not in done:
                return trial, setting
            earlier = done[_key(setting)]  # proposed again: the sampler learns the same value, nothing is served
            trial.set_user_attr("repeat_of", earlier.number)
            self.study.tell(trial, earlier.value)
        log.info("the sampler proposed measured settings %d times in a row: stopping", REPEATS_PER_TRIAL)
        return None

    def tell(self, trial: Trial, goodput_rps: float, row: dict[str, Any], curve: dict[str, Any], rate: float) -> None:
        if self.target_rps is None:
            self.study.set_user_attr("target_rps", rate)  # a resumed tune offers the same target rate
        trial.set_user_attr("row", row)
        trial.set_user_attr("curve", curve)
        self.study.tell(trial, goodput_rps)

    def fail(self, trial: Trial) -> None:
        """An interrupted or failed measurement: recorded as failed, measured again on the next run."""
        with contextlib.suppress(Exception):  # the storage itself may be what failed
            self.study.tell(trial, state=TrialState.FAIL)

    def results(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every measured setting's row and curve, in the order they were measured."""
        done = sorted(self.measured(), key=lambda t: t.number)
        return [t.user_attrs["row"] for t in done], [t.user_attrs["curve"] for t in done]


@contextlib.contextmanager
def tune_search(folder: Path, name: str, grid: list[dict[str, Any]], tu: TuneConfig, st: StudyConfig):
    """Open (or continue) the tune's study under ``folder``, held by this process alone while the block runs:
    two tunes of one study would serve on one port and count each other's load."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "tune.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError("tune.dir", f"another serve-tune is running in {folder}") from None
        yield _open(folder, name, grid, tu, st)


def _open(folder: Path, name: str, grid: list[dict[str, Any]], tu: TuneConfig, st: StudyConfig) -> TuneSearch:
    quiet_design_warnings()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per trial: serve-tune logs its own
    storage = make_storage(f"sqlite:///{(folder / 'tune.db').resolve()}", st)
    if not tu.resume:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)
    sampler = make_sampler(replace(st, sampler=SamplerName.tpe, n_jobs=1))
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", sampler=sampler, load_if_exists=True
    )
    _fail_abandoned(study, storage)
    return TuneSearch(study, grid, tu.n_trials, folder / "tune.db")


def _fail_abandoned(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Trials left running by a tune that was killed (the lock says none runs now): failed, so measured again."""
    sid = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(sid, t.number), TrialState.FAIL)
        log.info("serve-tune: trial %d (%s) was interrupted: measuring it again", t.number, t.params)


def describe(search: TuneSearch) -> str:
    done = len(search.measured())
    how = "every one" if search.exhaustive else f"{search.n_trials} of them, chosen by Optuna's TPE sampler"
    resumed = f"; resuming {search.study.study_name} ({search.path}): {done} measured before" if done else ""
    return f"{len(search.grid)} setting(s), measuring {how}{resumed}"
