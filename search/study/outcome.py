"""How a sweep ends: its exit status, and the checks that keep a scheduled study honest.

Exit status: 0 done; 3 every measured trial failed; 4 no feasible configuration;
5 the recommendation got worse than the one the previous run stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import optuna
from infersearch.config import StudyConfig
from infersearch.errors import ConfigError
from optuna.trial import TrialState

EXIT_OK, EXIT_ALL_FAILED, EXIT_NO_FEASIBLE, EXIT_REGRESSED = 0, 3, 4, 5


@dataclass
class Outcome:
    code: int
    message: str


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


def regression(previous: dict[str, Any], values: dict[str, float], st: StudyConfig) -> str | None:
    """Why ``values`` are worse than the previous recommendation's, or None."""
    for o in st.objectives:
        name, direction = o.metric, getattr(o.direction, "value", o.direction)
        if name not in previous.get("values", {}):
            continue
        old, new = previous["values"][name], values[name]
        margin = st.regression_tolerance.get(name, 0.05) * abs(old)
        worse = new > old + margin if direction == "minimize" else new < old - margin
        if worse:
            return f"{name} {new:.6g} vs {old:.6g} before (tolerance {margin:.3g})"
    return None


def conclude(study: optuna.Study, summary, st: StudyConfig) -> Outcome:
    """The exit status of this run; stores its recommendation for the next run to compare with."""
    measured = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("measured")]
    if measured and all(t.state == TrialState.FAIL for t in measured):
        return Outcome(EXIT_ALL_FAILED, f"every one of the {len(measured)} measured trials failed")
    rec = summary.recommended
    if rec is None:
        return Outcome(EXIT_NO_FEASIBLE, "no feasible configuration: every complete trial violates a constraint")
    history = list(study.user_attrs.get("recommendations", []))
    values = {o.metric: v for o, v in zip(st.objectives, rec.values)}
    entry = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
        "trial": rec.number,
        "values": values,
        "params": rec.user_attrs.get("params", {}),
    }
    study.set_user_attr("recommendations", [*history, entry][-50:])
    if history:
        why = regression(history[-1], values, st)
        if why:
            return Outcome(EXIT_REGRESSED, f"the recommendation got worse than the previous run's: {why}")
    return Outcome(EXIT_OK, f"recommended trial {rec.number}")
