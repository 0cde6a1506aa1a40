"""The sampler's own study, in memory: every proposal and what came of it.

The stored study holds one trial per configuration that was launched, which is what ``optuna trials``,
``optuna best-trials`` and optuna-dashboard show. A sampler also has to learn from the proposals that
launched nothing: a configuration measured before (told its stored outcome again, as a repeat), one this
device refuses (PRUNED, so TPE stops proposing it), one another worker is measuring (PRUNED). Those live
only here, beside a copy of every stored trial, which :meth:`Proposals.sync` brings in before each ask
(other workers' trials, and earlier runs' on a resumed study). How many there were is stored in the study's
``proposals`` user attribute."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from infersearch.config import StudyConfig
from infersearch.study.record import Record, tell, told
from infersearch.study.storage import directions, make_sampler

KINDS = ("repeated", "refused", "in_flight")
log = logging.getLogger(__name__)


class Proposals:
    def __init__(self, st: StudyConfig, dists: Mapping[str, BaseDistribution]) -> None:
        self.dists = dict(dists)
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
        sampler = make_sampler(st, dists)
        try:
            self.study = optuna.create_study(directions=directions(st), sampler=sampler)
        finally:
            optuna.logging.set_verbosity(level)
        log.info("sampler: %s (study.sampler=%s, seed %d)", type(sampler).__name__, st.sampler, st.seed)
        self.synced: set[int] = set()  # numbers of the stored trials copied here
        self.tally: Counter[str] = Counter()

    def sync(self, stored: optuna.Study) -> None:
        """Copy in the stored trials this study lacks: completed and pruned ones the sweeper told."""
        for t in stored.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if t.number in self.synced or not told(t):
                continue
            self.synced.add(t.number)
            self.study.add_trial(
                optuna.trial.create_trial(
                    state=t.state,
                    values=t.values if t.state == TrialState.COMPLETE else None,
                    params=t.params,
                    distributions=t.distributions,
                    constraints=t.constraints or None,
                )
            )

    def ask(self, stored: optuna.Study) -> optuna.Trial:
        self.sync(stored)
        return self.study.ask(self.dists)

    def enqueue(self, params: dict[str, Any], user_attrs: dict[str, Any]) -> None:
        self.study.enqueue_trial(params, user_attrs=user_attrs, skip_if_exists=True)

    def outcome(self, trial: optuna.Trial, frozen: FrozenTrial) -> None:
        """The stored trial this proposal launched, told here too."""
        self.synced.add(frozen.number)
        self._tell(trial, frozen)

    def repeat(self, trial: optuna.Trial, previous: FrozenTrial) -> None:
        self.tally["repeated"] += 1
        self._tell(trial, previous)

    def refuse(self, trial: optuna.Trial, kind: str) -> None:
        """Refused on this device, or being measured by another worker (``in_flight``)."""
        self.tally[kind] += 1
        tell(self.study, trial, Record(None, state=TrialState.PRUNED))

    def drop(self, trial: optuna.Trial) -> None:
        """Asked, but not launched (the budget was taken meanwhile): nothing to learn."""
        tell(self.study, trial, Record(None, state=TrialState.FAIL))

    def _tell(self, trial: optuna.Trial, frozen: FrozenTrial) -> None:
        values = frozen.values if frozen.state == TrialState.COMPLETE else None
        tell(self.study, trial, Record(values, dict(frozen.constraints), state=frozen.state))

    def store_tally(self, stored: optuna.Study) -> None:
        """Add this run's counts to the study's (workers that finish together may lose one's counts)."""
        total = Counter(stored.user_attrs.get("proposals") or {}) + self.tally
        stored.set_user_attr("proposals", {k: total.get(k, 0) for k in KINDS})
        self.tally.clear()


def evaluated(study: optuna.Study) -> set[tuple]:
    """The parameter sets that came to an outcome."""
    finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    return {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False, states=finished)}
