"""How a trial's result becomes Optuna values, constraints and attributes.

Everything a report needs is stored on the trial, so reports and the front can
be rebuilt from storage alone. One function builds the record and one tells it
(infersearch.study.job: the job that measured the trial).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from infersearch.config import StudyConfig, allowed_drop
from infersearch.core.errors import ConfigError, TrialRejected, error_line
from infersearch.study.attrs import TrialAttrs, attrs_of
from infersearch.study.pareto import complete_values, feasible, hypervolume, is_finite, reference_point, within
from infersearch.study.storage import directions
from infersearch.study.sweep import tell_past_stop

RESULT_KEYS = ("params", "metric", "metrics", "baseline", "env", "timings_s", "history", "config")


@dataclass
class Record:
    values: list[float] | None  # None: the trial failed or was refused
    constraints: dict[str, float] = field(default_factory=dict)
    attrs: TrialAttrs = field(default_factory=TrialAttrs)
    state: TrialState = TrialState.COMPLETE


def constraint_values(result: Mapping[str, Any], st: StudyConfig) -> dict[str, float]:
    """Optuna constraints (feasible when <= 0), not penalties. ``max_drop``: how much worse than the
    baseline the model's metric is, beyond the allowed drop, in the metric's units."""
    metrics, name = result["metrics"], result["metric"]["name"]
    out = {}
    allowed = allowed_drop(st, result["baseline"][name])
    if allowed is not None:
        out["max_drop"] = float(metrics[f"{name}_drop"]) - allowed
    if st.latency_slo_ms is not None:
        out["latency_slo_ms"] = float(metrics["latency_ms_p95"]) - st.latency_slo_ms
    return out


def success_record(study: optuna.Study, result: Mapping[str, Any], st: StudyConfig, overrides: list[str]) -> Record:
    metrics = result["metrics"]
    missing = [o.metric for o in st.objectives if o.metric not in metrics]
    if missing:
        raise ConfigError("study.objectives", f"metric {missing[0]!r} is not measured; known: {', '.join(metrics)}")
    values = [float(metrics[o.metric]) for o in st.objectives]
    attrs = TrialAttrs(measured=True, overrides=overrides, **{k: result.get(k) or {} for k in RESULT_KEYS})
    if not is_finite(values):
        return failure_record(FloatingPointError(f"objective values are not finite: {values}"), overrides, attrs)
    constraints = constraint_values(result, st)
    ref = study.user_attrs.get("hv_reference")
    if ref is None:
        name = result["metric"]["name"]
        ref = reference_point(
            result["baseline"], metrics, st.objectives, name, allowed_drop(st, result["baseline"][name])
        )
        study.set_user_attr("hv_reference", ref)
    points = [t.values for t in complete_values(study) if feasible(t)]
    if within(constraints):
        points.append(values)
    attrs.hypervolume = hypervolume(points, directions(st), ref)
    return Record(values, constraints, attrs)


def failure_record(
    exc: BaseException, overrides: list[str], attrs: TrialAttrs | None = None, refused: bool = False
) -> Record:
    """A trial that raised is FAIL. One refused up front (a combination the device cannot
    run) did no work, and one rejected early (it cannot meet the accuracy constraint) stopped
    before its latency: both are PRUNED, which TPE counts among the bad trials and so stops
    proposing, where it would ignore a FAIL and propose the same combination again."""
    rejected = isinstance(exc, TrialRejected)
    attrs = replace(
        attrs or TrialAttrs(),
        error=error_line(exc),
        refused=refused,
        measured=not refused,
        overrides=overrides,
        rejected=rejected,
    )
    return Record(None, attrs=attrs, state=TrialState.PRUNED if refused or rejected else TrialState.FAIL)


def tell(study: optuna.Study, trial: optuna.Trial, record: Record) -> FrozenTrial:
    for key, value in record.attrs.stored().items():
        trial.set_user_attr(key, value)
    for key, value in record.constraints.items():
        trial.set_constraint(key, value)
    return tell_past_stop(study, trial, record.values, record.state)


FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def told(t: FrozenTrial) -> bool:
    """The sweeper recorded this trial's outcome. A worker killed after writing the record but before
    ``tell`` leaves a success record on a trial the heartbeat failed: that one was not told."""
    a = attrs_of(t)
    return a.measured is not None and not (t.state == TrialState.FAIL and not a.error)


def counts(t: FrozenTrial) -> bool:
    """The trial used budget: it was measured (completed, failed, or rejected early)."""
    return told(t) and bool(attrs_of(t).measured)


def canonical(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that make the variant: a float model (quant.bits=32) has no quantization scheme,
    an unpruned one no pruning criterion, so those keys do not tell two such trials apart."""
    out = dict(params)
    if out.get("quant.bits") == 32:
        out.pop("quant.scheme", None)
    if out.get("prune.ratio") == 0:
        for key in ("prune.importance", "prune.heads", "prune.round_to"):
            out.pop(key, None)
    return out


def find_previous(study: optuna.Study, params: Mapping[str, Any]) -> FrozenTrial | None:
    """A finished trial that built the same variant (:func:`canonical`) and that this project told
    (a trial failed by the heartbeat, whose worker died, carries no record and is retried instead)."""
    wanted = canonical(params)
    return next(
        (t for t in study.get_trials(deepcopy=False, states=FINISHED) if counts(t) and canonical(t.params) == wanted),
        None,
    )


def in_flight(study: optuna.Study, params: Mapping[str, Any] | None = None) -> list[FrozenTrial]:
    """Running trials (other workers'), optionally those with these params."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if params is None or canonical(t.params) == canonical(params)]
