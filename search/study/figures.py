"""The figures a study reports for each trial: one anchor per batch size, confirmed where re-timed.

A trial stores what it measured, its ratio to the baseline, and the anchor that converted it to
milliseconds. When a later trial (or the confirmation) re-took the anchor for that batch size
(infersearch.measure.anchor), earlier trials' milliseconds are re-derived from the new one, so one
study's figures never mix anchors. A trial the confirmation re-timed is reported at its confirmed
figures. Optuna's own stored values stay the first measurement; the report, pareto.json, the
recommendation, W&B and the regression check use these.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from infersearch.measure.anchor import rescaled
from infersearch.study.attrs import attrs_of


def _batch(t: FrozenTrial) -> int | None:
    bs = attrs_of(t).params.get("batch_size", t.params.get("batch_size"))
    return None if bs is None else int(bs)


def current_anchors(trials: list[FrozenTrial], confirmation: dict[str, Any]) -> dict[int, float]:
    """Per batch size, the latest settled anchor: the confirmation's (timed last), else the one of the
    highest-numbered trial that had one."""
    anchors: dict[int, float] = {}
    by_number = {str(t.number): t for t in trials}
    latest = [attrs_of(t).metrics | {"_bs": _batch(t)} for t in sorted(trials, key=lambda t: t.number)]
    latest += [c | {"_bs": _batch(by_number[n])} for n, c in confirmation.items() if n in by_number]
    for m in latest:
        if "anchor_ms" in m and m.get("anchor_settled", 1.0) and m["_bs"] is not None:
            anchors[m["_bs"]] = float(m["anchor_ms"])
    return anchors


def reported(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Per complete trial (keyed by its number as text): its metrics with the latency it is reported
    at: confirmed where re-timed, else its first measurement re-derived from the current anchor."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    confirmation = study.user_attrs.get("confirmation", {}) or {}
    anchors = current_anchors(trials, confirmation)
    out = {}
    for t in trials:
        metrics = attrs_of(t).metrics
        bs = _batch(t)
        if bs in anchors:
            metrics = rescaled(metrics, anchors[bs])
        out[str(t.number)] = metrics | confirmation.get(str(t.number), {})
    return out


def disturbed(t: FrozenTrial, figures: dict[str, Any]) -> bool:
    """The trial's latency was timed (confirmed, or first measured) on a machine that never settled."""
    metrics = figures.get(str(t.number)) or attrs_of(t).metrics
    return bool(metrics.get("machine_disturbed"))


def timed(metrics: dict[str, Any]) -> str:
    """How a reported figure was timed: DISTURBED, confirmed (re-timed side by side) or first."""
    if metrics.get("machine_disturbed"):
        return "DISTURBED"
    return "confirmed" if "spread" in metrics else "first"


def trusted(t: FrozenTrial, figures: dict[str, Any], confirmation: dict[str, Any]) -> bool:
    """A figure a recommendation may rest on: not disturbed, and confirmed when the study confirmed."""
    return not disturbed(t, figures) and (not confirmation or str(t.number) in confirmation)
