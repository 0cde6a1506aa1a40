"""How a sweep ends: its exit status, and the checks that keep a scheduled study honest.

Exit status: 0 done; 3 every measured trial failed; 4 no feasible configuration;
5 the recommendation got worse than the previous run's (infersearch.study.regression says what that means).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from infersearch.config import StudyConfig
from infersearch.core.errors import ConfigError
from infersearch.study.attrs import attrs_of
from infersearch.study.figures import disturbed, reported
from infersearch.study.pareto import objective_values
from infersearch.study.record import counts
from infersearch.study.regression import rebased, settings, spread_of, verdict

log = logging.getLogger(__name__)

GENERATION = ("tpot_ms", "ttft_ms", "tokens_per_s")
EXIT_OK, EXIT_ALL_FAILED, EXIT_NO_FEASIBLE, EXIT_REGRESSED = 0, 3, 4, 5


@dataclass
class Outcome:
    code: int
    message: str
    recommendation: dict | None = None  # this run's entry of the study's ``recommendations``


def check_model(study: optuna.Study, key: str, st: StudyConfig) -> None:
    """A study belongs to one baseline: a changed model or checkpoint is refused, never mixed in."""
    stored = study.user_attrs.get("model_key")
    if stored is None:
        study.set_user_attr("model_key", key)
    elif stored != key:
        raise ConfigError(
            "model",
            f"study {st.name!r} holds results for another model or checkpoint (key {stored}, now {key}); "
            f"start a fresh study, e.g. study.name={st.name}-{key[:8]}",
        )


def conclude(study: optuna.Study, summary, st: StudyConfig) -> Outcome:
    """The exit status of this run; stores its recommendation for the next run to compare with."""
    measured = [t for t in study.get_trials(deepcopy=False) if counts(t)]
    if measured and all(t.state == TrialState.FAIL for t in measured):
        return Outcome(EXIT_ALL_FAILED, f"every one of the {len(measured)} measured trials failed")
    rec = summary.recommended
    if rec is None:
        return Outcome(EXIT_NO_FEASIBLE, "no feasible configuration: every complete trial violates a constraint")
    history = list(study.user_attrs.get("recommendations", []))
    confirmation, figures = study.user_attrs.get("confirmation", {}), reported(study)
    values = objective_values(rec, figures, st.objectives)
    entry = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
        "trial": rec.number,
        "values": {o.metric: v for o, v in zip(st.objectives, values)},
        "spread": spread_of(rec, confirmation),
        "disturbed": disturbed(rec, figures),
        "anchor_ms": figures[str(rec.number)].get("anchor_ms"),
        # a language model's serving figures, for the textfile beside the objectives
        "generation": {k: figures[str(rec.number)][k] for k in GENERATION if k in figures[str(rec.number)]},
        "params": attrs_of(rec).params,
        "settings": settings(st),
    }
    study.set_user_attr("recommendations", [*history, entry][-50:])
    if not history:
        return Outcome(EXIT_OK, f"recommended trial {rec.number}", entry)
    previous = history[-1]
    trials = study.get_trials(deepcopy=False)
    p = previous.get("trial")
    found = trials[p] if isinstance(p, int) and p < len(trials) else None
    now_ms = figures.get(str(p), {}).get("anchor_ms") if found is not None else None
    previous, moved = rebased(previous, now_ms)
    v = verdict(previous, rec, values, confirmation, found, st)
    for note in ([moved] if moved else []) + v.notes:
        log.warning("%s", note)
    if v.regressed:
        return Outcome(EXIT_REGRESSED, f"the recommendation got worse than the previous run's: {v.message}", entry)
    if v.message:
        log.info("against the previous run's recommendation: %s", v.message)
    return Outcome(EXIT_OK, f"recommended trial {rec.number}", entry)
