"""Latency that survives a drifting, busy machine: ratio to the baseline, times an anchor that holds.

A shared machine flips between fast and slow states for seconds at a time, and a laptop or CI runner
has neighbours that come and go. Each trial times the fp32 baseline in the same interleaved rounds as
its variant; a state change slows both alike, so their ratio holds (taken per round, where the two ran
a fraction of a second apart, then the median over rounds). The latency reported is that ratio times
the *anchor*: the baseline's latency on this machine, timed longer, with the trial's own threads in
the trial's own process. The raw figures stay beside the derived ones, as ``*_measured``;
``machine_state`` is the baseline's latency now over the anchor (1.0 = the state the anchor saw).

An anchor is a measurement with a quality bar (``Anchor.settled``): it counts only rounds in which no
other program took the cores its threads need (infersearch.measure.contention), and its round medians
must agree within ``measure.anchor_spread``. Only a settled anchor is cached (per model, batch size,
device, threads and host). It is re-taken, and the event logged, when a trial sees the baseline far
from it with the machine otherwise idle, in either direction: faster than ``1 / max_state`` (it was
timed in a slow moment) or slower than ``max_state`` through every round (the machine itself moved).

The ratio holds for the mild drift of a quiet machine, not under a heavy neighbour: there the kernels
slow unequally (two OpenMP threads of the fp32 baseline on two busy cores far more than ONNX Runtime's
int8). So a round in which others took our cores, or whose baseline ran slower than ``max_state``
times the anchor, is thrown away and re-run, for up to ``measure.max_wait_s``; a trial that never saw
the machine settle is marked ``machine_disturbed`` (its figure is the ratio of disturbed rounds, never
recommended without a re-timing: infersearch.study.confirm). ``benchmarks/busy_start.py`` and
``benchmarks/drift.py`` measure both.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from infersearch.config import MeasureConfig
from infersearch.core.cache import TensorCache, content_hash
from infersearch.measure.contention import free_for
from infersearch.measure.latency import LatencyStats, Round, Timing, measure_interleaved

log = logging.getLogger(__name__)

KIND = "anchor"
# After a measurement on this host ended disturbed, the next ones within BUSY_MEMORY_S wait at most
# BUSY_WAIT_S for clean rounds: a neighbour that stays would otherwise cost every trial max_wait_s.
BUSY_MEMORY_S, BUSY_WAIT_S = 120.0, 5.0
_BUSY_KEY = content_hash({"host": platform.node()})
DISTURBED_SINGLE = (
    "the machine stayed busy while it was timed (other programs on its cores, or the baseline far off its "
    "anchor, for measure.max_wait_s): the figures are the ratio of disturbed rounds; time it again when quiet"
)


@dataclass(frozen=True)
class Anchor:
    """The baseline's p50 per batch on this machine, and how far to trust it."""

    ms: float  # the median of its round medians
    spread: float  # robust spread of those round medians (log scale, 1.4826 x MAD)
    foreign_cores: float | None  # cores other programs took while it was timed
    settled: bool  # every round clean and the rounds agree within measure.anchor_spread
    taken: str  # when (UTC, ISO 8601)
    clean: bool = True  # every round clean (no other program on its cores); settled implies clean
    hit: bool = False  # read from the cache
    replaced_ms: float | None = None  # the anchor this one replaced in this trial

    def entry(self) -> dict[str, Any]:
        return {"p50_ms": self.ms, "spread": self.spread, "foreign_cores": self.foreign_cores, "taken": self.taken}

    @classmethod
    def of_entry(cls, e: dict[str, Any]) -> Anchor:
        spread, foreign, taken = float(e.get("spread", 0.0)), e.get("foreign_cores"), str(e.get("taken"))
        return cls(float(e["p50_ms"]), spread, foreign, settled=True, taken=taken, hit=True)


def clean_round(threads: int, m: MeasureConfig) -> Callable[[Round], bool]:
    """``keep_round``: no other program took the cores our ``threads`` need."""
    return lambda r: free_for(r.foreign_cores, threads, m.max_foreign_cores)


def state_gate(anchor: float, threads: int, m: MeasureConfig, baseline: str = "baseline") -> Callable[[Round], bool]:
    """``keep_round`` for a trial: a clean round whose baseline ran within ``max_state`` of the anchor.
    Kernels do not slow alike under a heavy neighbour (measured: the fp32 baseline 3x slower, ONNX
    Runtime int8 1.2x), so there the ratio no longer holds and the round is re-run."""
    clean = clean_round(threads, m)
    return lambda r: clean(r) and r.medians[baseline] <= m.max_state * anchor


def time_anchored(
    fns: dict[str, Callable[[], Any]],
    batch_size: int,
    timing: Timing,
    device: str,
    book: AnchorBook,
    band: float | None = None,
) -> tuple[dict[str, LatencyStats], Anchor]:
    """Interleaved rounds of ``fns`` (``baseline`` among them) through the gate of this machine's anchor;
    the anchor re-taken when the rounds show it stale, and the rounds re-run when every one of them had
    been judged against it. An unsettled anchor already waited for a quiet machine: no second wait; a
    machine found busy moments ago gets a short one. ``band``: re-take the anchor whenever the clean rounds'
    baseline is off it by more than this factor (the confirmation's figures, the ones reported, use 1.05:
    ``max_state`` lets a trial's absolute figure be up to 20% off)."""
    base = fns["baseline"]
    if book.recently_busy():
        timing = replace(timing, max_wait_s=min(timing.max_wait_s, BUSY_WAIT_S))
        book = replace(book, m=replace(book.m, max_wait_s=min(book.m.max_wait_s, BUSY_WAIT_S)))
    anchor = book.get(base, batch_size)
    if not anchor.clean:
        timing = replace(timing, max_wait_s=0.0)
    lat = measure_interleaved(fns, batch_size, timing, device, book.gate(anchor))
    if book.stale(anchor, lat["baseline"], band):
        anchor = book.retake(base, batch_size, anchor, lat["baseline"].p50_ms / anchor.ms)
        if lat["baseline"].disturbed:
            lat = measure_interleaved(fns, batch_size, timing, device, book.gate(anchor))
    book.note(lat["baseline"].disturbed or not anchor.clean)
    return lat, anchor


def judge(stats: LatencyStats, bar: float) -> Anchor:
    """An anchor from the baseline's rounds: settled when no round was disturbed and they agree."""
    mid = statistics.median(stats.round_p50_ms)
    spread = log_spread([r / mid for r in stats.round_p50_ms])
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    clean = not stats.disturbed
    return Anchor(mid, spread, stats.foreign_cores, clean and spread <= bar, now, clean=clean)


@dataclass(frozen=True)
class AnchorBook:
    """The anchors of one baseline on this machine, one per batch size: cached while they hold."""

    baseline_key: str
    device: str
    device_name: str
    threads: int
    m: MeasureConfig
    cache: TensorCache

    def _key(self, batch_size: int) -> str:
        ident = {"baseline": self.baseline_key, "device": self.device, "name": self.device_name}
        return content_hash(ident | {"batch": batch_size, "threads": self.threads, "host": platform.node()})

    def get(self, fn: Callable[[], Any], batch_size: int) -> Anchor:
        """The cached anchor, or one timed now (cached only if settled)."""
        entry = self.cache.get(KIND, self._key(batch_size))
        return Anchor.of_entry(entry) if entry is not None else self.take(fn, batch_size)

    def take(self, fn: Callable[[], Any], batch_size: int) -> Anchor:
        """Time the baseline alone, clean rounds only (waiting up to ``max_wait_s`` for them), once more
        if the rounds disagree; store it when settled, and never leave an older one behind when not."""
        m, key = self.m, self._key(batch_size)
        timing = Timing.of(m).for_anchor()  # why longer, and by how much: search/measure/latency.py
        for _ in range(2):
            stats = measure_interleaved({KIND: fn}, batch_size, timing, self.device, clean_round(self.threads, m))
            anchor = judge(stats[KIND], m.anchor_spread)
            if anchor.settled or stats[KIND].disturbed:
                break
        if anchor.settled:
            self.cache.put(KIND, key, anchor.entry())
        else:
            self.cache.drop(KIND, key)
        return anchor

    def recently_busy(self) -> bool:
        entry = self.cache.get("busy", _BUSY_KEY)
        return entry is not None and time.time() - float(entry["at"]) < BUSY_MEMORY_S

    def note(self, disturbed: bool) -> None:
        """Remember on this host whether the machine was busy: the next measurements wait less if so."""
        if disturbed:
            self.cache.put("busy", _BUSY_KEY, {"at": time.time()})
        else:
            self.cache.drop("busy", _BUSY_KEY)

    def gate(self, anchor: Anchor) -> Callable[[Round], bool]:
        return state_gate(anchor.ms, self.threads, self.m)

    def stale(self, anchor: Anchor, baseline: LatencyStats, band: float | None = None) -> bool:
        """Whether a trial's baseline shows the machine far from ``anchor`` while no other program was
        taking its cores: faster than ``1 / max_state`` (the anchor was timed in a slow moment), or
        slower than ``max_state`` through every round (the machine itself moved); with ``band``, off by
        more than that factor either way."""
        if not free_for(baseline.foreign_cores, self.threads, self.m.max_foreign_cores):
            return False
        state = baseline.p50_ms / anchor.ms
        if band is not None and not baseline.disturbed:
            return not 1 / band <= state <= band
        return state < 1 / self.m.max_state or (baseline.disturbed and state > self.m.max_state)

    def retake(self, fn: Callable[[], Any], batch_size: int, old: Anchor, state: float) -> Anchor:
        new = replace(self.take(fn, batch_size), replaced_ms=old.ms)
        log.warning(
            "latency anchor (batch %d) re-taken: the baseline ran at %.2fx it on an otherwise idle machine; "
            "%.4g ms -> %.4g ms (%s); figures derived from the old one are re-derived from the new one",
            batch_size,
            state,
            old.ms,
            new.ms,
            _verdict(new, self.m.anchor_spread),
        )
        return new


def _verdict(anchor: Anchor, bar: float) -> str:
    if anchor.settled:
        return "settled"
    if not anchor.clean:
        return "not settled: other programs kept its cores busy"
    return f"not settled: its rounds disagree (spread {anchor.spread:.3f} > {bar}), not cached"


def round_ratio(variant: LatencyStats, baseline: LatencyStats) -> float:
    """Median over interleaved rounds of variant / baseline: each pair ran moments apart."""
    return statistics.median(v / b for v, b in zip(variant.round_p50_ms, baseline.round_p50_ms))


def log_spread(ratios: list[float]) -> float:
    """Robust standard deviation of the per-round log ratios (1.4826 x MAD): one round's noise."""
    logs = [math.log(r) for r in ratios if r > 0]
    if len(logs) < 2:
        return 0.0
    mid = statistics.median(logs)
    return 1.4826 * statistics.median(abs(x - mid) for x in logs)


def anchored_metrics(variant: LatencyStats, baseline: LatencyStats, anchor: Anchor) -> dict[str, float]:
    """The variant's latency metrics derived from its ratio to the baseline; raw figures kept as ``*_measured``.
    Disturbed when its rounds never settled or its anchor's never did (an anchor whose clean rounds only
    disagree is not cached, but the trial's ratio, timed in clean rounds, stands)."""
    ratio = round_ratio(variant, baseline)
    p50 = ratio * anchor.ms
    foreign = variant.foreign_cores
    return {
        "latency_ms_p50": p50,
        "latency_ms_p95": p50 * variant.p95_ms / variant.p50_ms,
        "latency_ms_per_sample": p50 / variant.batch_size,
        "throughput_per_s": 1000.0 * variant.batch_size / p50,
        "latency_cv": variant.cv,
        "latency_repeats": variant.n,
        "latency_ms_p50_measured": variant.p50_ms,
        "latency_ms_per_sample_measured": variant.per_sample_ms,
        "latency_ratio_to_baseline": ratio,
        "speedup_vs_baseline": 1.0 / ratio,
        "machine_state": baseline.p50_ms / anchor.ms,
        "machine_disturbed": float(variant.disturbed or not anchor.clean),
        "latency_rounds_rejected": variant.rounds_rejected,
        "anchor_ms": anchor.ms,
        "anchor_spread": anchor.spread,
        "anchor_settled": float(anchor.settled),
    } | ({} if foreign is None else {"foreign_cores": foreign})  # None: rounds too short for /proc/stat's ticks


# The figures an anchor scales: re-derived when a study's anchor for their batch size changed.
ANCHORED = ("latency_ms_p50", "latency_ms_p95", "latency_ms_per_sample", "tpot_ms")  # tpot: a language model's p50
PER_SECOND = ("throughput_per_s", "tokens_per_s")


def rescaled(metrics: dict[str, Any], anchor_ms: float) -> dict[str, Any]:
    """A trial's anchored metrics re-derived from another anchor for its batch size (its ratio to the
    baseline is what was measured; the anchor only converts it to milliseconds)."""
    old = metrics.get("anchor_ms")
    if not old or anchor_ms == old:
        return metrics
    f = anchor_ms / old
    return (
        metrics
        | {k: metrics[k] * f for k in ANCHORED if k in metrics}
        | {k: metrics[k] / f for k in PER_SECOND if k in metrics}
        | {
            "anchor_ms": anchor_ms,
            "anchor_ms_first": old,
            "machine_state": metrics.get("machine_state", 1.0) / f,
        }
    )
