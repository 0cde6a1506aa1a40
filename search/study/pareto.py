"""The front (Optuna's own, constraints included), hypervolume and the recommendation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from infersearch.config import Rule
from infersearch.core.optuna_compat import hypervolume as hypervolume_of
from infersearch.study.attrs import attrs_of


def front(study: optuna.Study) -> list[FrozenTrial]:
    """Non-dominated complete trials; infeasible ones are excluded by Optuna itself.
    A reused trial repeats its original's values, so dropping it leaves the front unchanged."""
    return sorted((t for t in study.best_trials if attrs_of(t).reused_from is None), key=lambda t: t.number)


def within(constraints: Mapping[str, float]) -> bool:
    """Every constraint met (Optuna's convention: a value <= 0 is satisfied): what feasible means."""
    return all(v <= 0 for v in constraints.values())


def feasible(t: FrozenTrial) -> bool:
    return within(t.constraints)


def non_dominated(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """Per point, whether no other point is at least as good in every objective and better in one."""
    if not values:
        return []
    losses = _losses(values, directions)
    return [not bool(np.any(np.all(losses <= x, axis=1) & np.any(losses < x, axis=1))) for x in losses]


def _losses(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * sign


def reference_point(
    baseline: dict[str, Any], metrics: dict[str, Any], objectives: Sequence[Any], metric: str, allowed: float | None
) -> list[float]:
    """Fixed once per study so hypervolume is comparable across trials, from the first measured
    trial's baseline figures (its own where the baseline lacks the metric). For the model's ``metric``
    with an ``allowed`` drop (in its units): the constraint's bound, which every feasible trial is
    inside. Otherwise 2x the baseline for a minimised objective, 10% below it for a maximised one."""
    ref = []
    for o in objectives:
        name, d = o.metric, o.direction
        v = baseline.get(name, metrics[name])
        if name == metric and allowed is not None:
            ref.append(v + allowed if d == "minimize" else v - allowed)
        elif d == "minimize":
            ref.append(v * 2.0)
        else:
            ref.append(v * 0.9)
    return ref


def hypervolume(values: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]) -> float:
    """Hypervolume with minimised objectives on a log10 scale (where the reference is positive):
    latency and size gains are ratios, so halving 1 ms and halving 0.01 ms weigh the same. On a
    linear scale every fast variant covers nearly all the volume and the measure cannot tell a
    front of 2x speed-ups from one of 20x (benchmarks/search_efficiency.py)."""
    if not values:
        return 0.0
    losses = _hv_scale(_losses(values, directions), directions, reference)
    ref = _hv_scale(_losses([reference], directions), directions, reference)[0]
    inside = losses[np.all(losses < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    return hypervolume_of(inside, ref)


def _hv_scale(losses: np.ndarray, directions: Sequence[str], reference: Sequence[float]) -> np.ndarray:
    out = losses.copy()
    for j, (d, r) in enumerate(zip(directions, reference)):
        if d == "minimize" and r > 0:
            out[:, j] = np.log10(np.maximum(out[:, j], r * 1e-9))
    return out


def confirmed_front(
    study: optuna.Study, figures: dict[str, Any], objectives: Sequence[Any]
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """The front over feasible complete trials, each valued at its reported figures (study/figures.py:
    confirmed where re-timed, else re-derived from the current anchor); and the first-measured members
    that this moved off it."""
    first = front(study)
    if not figures:
        return first, []
    candidates = [t for t in complete_values(study) if feasible(t) and attrs_of(t).reused_from is None]
    dirs = [o.direction for o in objectives]
    values = [objective_values(t, figures, objectives) for t in candidates]
    keep = [t for t, ok in zip(candidates, non_dominated(values, dirs)) if ok]
    kept = {t.number for t in keep}
    return keep, [t for t in first if t.number not in kept]


def objective_values(t: FrozenTrial, figures: dict[str, Any], objectives: Sequence[Any]) -> list[float]:
    """The trial's objective values at its reported figures (study/figures.py) where there are some."""
    reported = figures.get(str(t.number), {})
    return [reported.get(o.metric, v) for o, v in zip(objectives, t.values)]


def recommend(
    members: Sequence[FrozenTrial], rule: Rule | str, directions: Sequence[str], values: Sequence[Sequence[float]]
) -> tuple[FrozenTrial, str]:
    """One configuration from the feasible front, and the rule that chose it."""
    if not members:
        raise ValueError("no feasible trial on the front")
    losses = _losses(values, directions)
    if rule == Rule.fastest:
        i = int(np.argmin(losses[:, -1]))
        return members[i], "fastest feasible front member (lowest last objective) within the constraints"
    if rule == Rule.most_accurate:
        i = int(np.argmin(losses[:, 0]))
        return members[i], "best first objective among feasible front members"
    lo, hi = losses.min(axis=0), losses.max(axis=0)
    scaled = (losses - lo) / np.where(hi > lo, hi - lo, 1.0)
    i = int(np.argmin(np.linalg.norm(scaled, axis=1)))
    return members[i], "knee: front member closest to the ideal point, each objective scaled to [0, 1]"


def complete_values(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]


def is_finite(values: Sequence[float]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
