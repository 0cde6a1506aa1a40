"""Latency that survives a drifting machine: ratio to the baseline, times a fixed anchor.

A shared machine flips between fast and slow states for seconds at a time, so two trials timed a
minute apart are timed on different machines. Each trial already times the fp32 baseline in the
same interleaved rounds as its variant; a state change slows both alike, so their ratio holds
(taken per round, where the two ran a fraction of a second apart, then the median over rounds).
The latency reported is that ratio times the baseline's latency measured once on this machine
(the anchor, cached per model, batch size, device, threads and host). The trial also records
``machine_state``: the baseline's latency now over the anchor (1.0 = the state the anchor saw).
The raw figures stay beside the derived ones, as ``*_measured``.

The ratio holds for the mild drift of a quiet machine, not under a heavy neighbour: there the kernels
slow unequally (oneDNN fp32 convolutions far more than ONNX Runtime int8). So a round whose baseline
ran slower than ``measure.max_state`` times the anchor is thrown away and re-run, for up to
``measure.max_wait_s``; a trial that never saw the machine settle is marked ``machine_disturbed``.
``benchmarks/drift.py`` measures both.
"""

from __future__ import annotations

import math
import platform
import statistics
from collections.abc import Callable
from typing import Any

from infersearch.cache import TensorCache, content_hash
from infersearch.config import MeasureConfig
from infersearch.measure.latency import LatencyStats, Timing, measure_interleaved

# The anchor is timed twice the rounds and six times as long as a trial's baseline, and the fastest
# of its round medians kept: the machine's undisturbed state, not the one it happened to be in.
ROUNDS_FACTOR, TIME_FACTOR = 2, 6.0


def anchor_ms(
    fn: Callable[[], Any],
    baseline_key: str,
    batch_size: int,
    device: str,
    device_name: str,
    threads: int,
    measure: MeasureConfig,
    cache: TensorCache,
) -> tuple[float, bool]:
    """The baseline's p50 latency per batch on this machine, measured on first use: ``(ms, cache_hit)``."""
    ident = {"baseline": baseline_key, "batch": batch_size, "device": device, "name": device_name}
    key = content_hash(ident | {"threads": threads, "host": platform.node()})
    m = measure

    def build() -> dict:
        timing = Timing.of(m).longer(ROUNDS_FACTOR, TIME_FACTOR, ROUNDS_FACTOR)
        stats = measure_interleaved({"anchor": fn}, batch_size, timing, device)["anchor"]
        return {"p50_ms": min(stats.round_p50_ms)}

    entry, hit = cache.get_or_build("anchor", key, build)
    return float(entry["p50_ms"]), hit


def state_gate(anchor: float, max_state: float, baseline: str = "baseline") -> Callable[[dict[str, float]], bool]:
    """``keep_round`` for :func:`measure_interleaved`: keep a round whose baseline ran within ``max_state``
    of the anchor. Kernels do not slow alike under a heavy neighbour (measured: the fp32 baseline 3x
    slower, ONNX Runtime int8 1.2x), so there the ratio no longer holds and the round is re-run."""
    return lambda medians: medians[baseline] <= max_state * anchor


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


def anchored_metrics(variant: LatencyStats, baseline: LatencyStats, anchor: float) -> dict[str, float]:
    """The variant's latency metrics derived from its ratio to the baseline; raw figures kept as ``*_measured``."""
    ratio = round_ratio(variant, baseline)
    p50 = ratio * anchor
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
        "machine_state": baseline.p50_ms / anchor,
        "machine_disturbed": float(variant.disturbed),
        "latency_rounds_rejected": variant.rounds_rejected,
        "anchor_ms": anchor,
    }
