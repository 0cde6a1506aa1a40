"""Is this run's recommendation worse than the previous run's? Compared fairly, under this run's rule.

A scheduled study pages someone on exit 5, so "worse" must mean worse, not noise:
- The rule decides what counts: ``fastest`` compares the last objective, ``most_accurate`` the first,
  ``knee`` all of them (worse only when the previous recommendation dominates the new one). A faster
  recommendation that still meets the constraints is an improvement, whatever else it trades.
- The previous recommendation is re-timed side by side with the new one in this run (confirm.py), so a
  change of choice is judged in one machine state; that figure is reported beside the comparison.
- The comparison is with the figure the previous run stored (anchored to the baseline, so both refer to
  one fixed reference): a slower machine, fewer threads or a slower engine release shows there.
- An anchor re-taken between the runs re-derives the previous figures from the new anchor, which holds when
  the machine's speed moved for every kernel alike. It need not: a baseline timed in a slow moment moves the
  anchor but not the variant (seen in CI: the anchor 3.2x apart, the same configuration at +9.5% as each run
  reported it and +253% re-derived). So, after such a move, a timed figure is worse only when it is worse
  both re-derived and as the previous run reported it.
- The margin is the measured noise, not a fixed share: ``study.regression_margin`` x the combined
  per-round spread (robust standard deviation of log latency ratios) of the two runs' figures, and never
  less than the confirmation's anchor band (5%), within which the anchor, and so every figure, may drift.
  Metrics the confirmation does not re-time (accuracy, size, MACs) are deterministic for a
  configuration and compared as they are.
- A change of rule, constraints or objectives since the previous run is reported, and the comparison
  is made under the new ones; a previous recommendation that violates the new constraints is not compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from infersearch.config import Rule, StudyConfig
from infersearch.measure.anchor import log_spread, rescaled
from infersearch.study.attrs import attrs_of
from infersearch.study.confirm import CONFIRM_BAND
from infersearch.study.figures import disturbed
from infersearch.study.record import constraint_values

# A timed figure keeps its anchor while the confirmation sees the machine within CONFIRM_BAND of it, so two
# runs' figures of one configuration can part by that much with nothing changed (seen in CI: the same trial,
# +4.5% against a 4.4% noise margin): a change inside the band is never called worse
BAND_FLOOR = math.log(CONFIRM_BAND)
RETIMED = ("latency_ms_p50", "latency_ms_p95", "latency_ms_per_sample", "throughput_per_s", "tpot_ms", "tokens_per_s")


def settings(st: StudyConfig) -> dict[str, Any]:
    """What the verdict depends on besides the measurements: stored with each recommendation."""
    return {
        "rule": st.recommend,
        "constraints": {"max_drop": st.max_drop, "drop": st.drop, "latency_slo_ms": st.latency_slo_ms},
        "objectives": [[o.metric, o.direction] for o in st.objectives],
    }


@dataclass
class Comparison:
    """One objective of the new recommendation against the previous one's stored figure."""

    metric: str
    new: float
    before: float
    change: float  # log-ratio, positive = worse
    margin: float  # log-ratio; 0 for deterministic metrics
    now_previous: float | None  # the previous recommendation, re-timed side by side in this run
    reported: float | None = None  # the previous figure as its run reported it, where the anchor moved since
    reported_change: float | None = None  # log-ratio against that figure, positive = worse

    @property
    def worse(self) -> bool:
        beyond = self.change > self.margin + 1e-12
        return beyond and (self.reported_change is None or self.reported_change > self.margin + 1e-12)

    @property
    def better(self) -> bool:
        return self.change < -(self.margin + 1e-12)

    def text(self) -> str:
        pct = lambda x: f"{100 * math.expm1(x):+.1f}%"  # noqa: E731
        margin = f"margin {100 * math.expm1(self.margin):.1f}%" if self.margin else "deterministic, no margin"
        now = "" if self.now_previous is None else f"; the previous one re-timed now: {self.now_previous:.4g}"
        if self.reported is not None:
            now += f"; {self.reported:.4g} as the previous run reported it ({pct(self.reported_change)})"
        return f"{self.metric} {self.new:.4g} vs {self.before:.4g} ({pct(self.change)}, {margin}{now})"


@dataclass
class Verdict:
    regressed: bool
    message: str
    notes: list[str] = field(default_factory=list)  # changed settings, skipped comparisons


def rebased(previous: dict[str, Any], now_ms: float | None) -> tuple[dict[str, Any], str | None]:
    """The previous entry's timed figures re-derived from ``now_ms``, the anchor its recommendation's
    figure is on in this run. An anchor is re-taken only when the machine itself changed
    (measure/anchor.py): its speed moved, not the model's, so the comparison is made in units of the
    baseline on this machine, as within one study."""
    was = previous.get("anchor_ms")
    if not was or not now_ms or now_ms == was:
        return previous, None
    values = {k: v for k, v in rescaled(previous["values"] | {"anchor_ms": was}, now_ms).items()
              if k in previous["values"]}  # fmt: skip
    bs = previous.get("params", {}).get("batch_size", "?")
    note = (
        f"the latency anchor (batch {bs}) moved from {was:.4g} to {now_ms:.4g} ms since the previous run (the "
        f"machine runs at {now_ms / was:.2f}x): the previous figures are compared re-derived from the current one"
    )
    return previous | {"values": values, "anchor_ms": now_ms, "reported": previous["values"]}, note


def _changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [
        f"{key} changed since the previous run ({before[key]} -> {now[key]}): compared under the new {key}"
        for key in ("rule", "constraints", "objectives")
        if key in before and before[key] != now[key]
    ]


def _change(direction: str, new: float, before: float) -> float:
    """Log-ratio, positive = worse; figures that are not positive compare as they are (+-1 or 0)."""
    if new <= 0 or before <= 0:
        worse = (new < before) if direction == "maximize" else (new > before)
        return 1.0 if worse else -1.0 if new != before else 0.0
    return math.log(before / new) if direction == "maximize" else math.log(new / before)


def _compare(metric: str, direction: str, new: float, before: float, spread: float | None, now_prev,
             reported: float | None = None) -> Comparison:  # fmt: skip
    margin = (spread or 0.0) if new > 0 and before > 0 else 0.0
    back = None if reported is None else _change(direction, new, reported)
    return Comparison(metric, new, before, _change(direction, new, before), margin, now_prev, reported, back)


def _deciding(rule: str, n: int) -> list[int]:
    return {Rule.fastest: [n - 1], Rule.most_accurate: [0]}.get(rule, list(range(n)))


def verdict(
    previous: dict[str, Any],
    rec: FrozenTrial,
    values: list[float],
    confirmation: dict[str, Any],
    prev_trial: FrozenTrial | None,
    st: StudyConfig,
) -> Verdict:
    """Compare ``rec`` (this run's recommendation, valued ``values``) with the ``previous`` entry."""
    now = settings(st)
    notes = _changes(previous.get("settings", {}), now)
    p = previous.get("trial")
    if prev_trial is not None and prev_trial.state == TrialState.COMPLETE:
        violated = [k for k, v in constraint_values(vars(attrs_of(prev_trial)), st).items() if v > 0]
        if violated:
            notes.append(f"the previous recommendation, trial {p}, violates {', '.join(violated)} now: not compared")
            return Verdict(False, "", notes)
    theirs = confirmation.get(str(p), {})
    deciding = _deciding(now["rule"], len(st.objectives))
    timed = any(st.objectives[i].metric in RETIMED for i in deciding)
    if timed and (disturbed(rec, confirmation) or previous.get("disturbed")):
        which = "this run's" if disturbed(rec, confirmation) else "the previous run's"
        notes.append(
            f"the machine stayed disturbed (other programs on its cores, or the baseline far off its anchor) while "
            f"{which} "
            "recommendation was timed: its latency says nothing about the model, not compared"
        )
        return Verdict(False, "", notes)
    comparisons = []
    for i in deciding:
        o = st.objectives[i]
        if o.metric not in previous.get("values", {}):
            notes.append(f"the previous run stored no {o.metric}: not compared")
            continue
        spread = None
        if o.metric in RETIMED:  # timed: the margin comes from both runs' per-round spread
            own = spread_of(rec, confirmation)
            spread = max(st.regression_margin * math.hypot(own, previous.get("spread", own)), BAND_FLOOR)
        reported = previous.get("reported", {}).get(o.metric) if o.metric in RETIMED else None
        before = previous["values"][o.metric]
        comparisons.append(_compare(o.metric, o.direction, values[i], before, spread, theirs.get(o.metric), reported))
    if now["rule"] == Rule.knee:
        regressed = any(c.worse for c in comparisons) and not any(c.better for c in comparisons)
    else:
        regressed = any(c.worse for c in comparisons)
    what = "; ".join(c.text() for c in comparisons)
    head = f"trial {rec.number} {_params(rec)} against the previous run's trial {p} {_params(prev_trial)}: {what}"
    return Verdict(regressed, head, notes)


def spread_of(t: FrozenTrial, confirmation: dict[str, Any]) -> float:
    """One round's noise in the trial's latency (log scale): from the side-by-side confirmation where it
    was re-timed, else from its own rounds."""
    if "spread" in confirmation.get(str(t.number), {}):
        return float(confirmation[str(t.number)]["spread"])
    rounds = attrs_of(t).env.get("latency_round_p50_ms") or []
    if len(rounds) < 2:
        return 0.0
    mid = sorted(rounds)[len(rounds) // 2]
    return log_spread([r / mid for r in rounds])


def _params(t: FrozenTrial | None) -> str:
    if t is None:
        return "(not in the study)"
    p = attrs_of(t).params or t.params
    keys = ("engine", "quant_bits", "precision", "prune_ratio", "batch_size")
    return "(" + " ".join(f"{k}={p[k]}" for k in keys if k in p) + ")"


def keep_previous(
    pick: FrozenTrial,
    previous: FrozenTrial | None,
    values: dict[int, list[float]],
    confirmation: dict[str, Any],
    st: StudyConfig,
) -> str | None:
    """Why the previous recommendation stays recommended, or None. Under ``fastest``, a front member that
    is faster than the previous recommendation only within the measured noise does not replace it: an
    unchanged study keeps its verdict from run to run instead of flipping between equals."""
    if previous is None or previous.number == pick.number or previous.number not in values:
        return None
    if disturbed(pick, confirmation) or disturbed(previous, confirmation):
        return None
    metric = st.objectives[-1].metric
    if st.recommend != Rule.fastest or metric not in RETIMED:
        return None
    new, old = values[pick.number][-1], values[previous.number][-1]
    if new <= 0 or old <= 0:
        return None
    gain = math.log(old / new) if st.objectives[-1].direction == "minimize" else math.log(new / old)
    margin = st.regression_margin * math.hypot(spread_of(pick, confirmation), spread_of(previous, confirmation))
    if gain > margin:
        return None
    return (
        f"kept the previous recommendation, trial {previous.number}: trial {pick.number} is "
        f"{100 * math.expm1(gain):+.1f}% on {metric}, within the margin of {100 * math.expm1(margin):.1f}%"
    )
