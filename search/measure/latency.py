"""Latency from real kernels: warm-up, synchronisation, repeats until both a
minimum count and a minimum time are reached, candidates interleaved in
rounds so that machine drift hits them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from infersearch.measure.contention import Mark

# The two figures timed longer than a trial's, by how much (both take twice the rounds and repeats: more
# round medians for their spread). They differ in time on purpose:
# - the anchor is one callable, timed once per model, batch size, threads and host, then cached; every
#   trial's latency is a ratio times it, so its error is in every figure: six times a trial's time;
# - the confirmation times every front member and the baseline side by side, each taking its time in every
#   round, so its cost grows with the front, and its shared rounds already cancel drift: three times.
LONGER_ROUNDS = 2
ANCHOR_TIME_FACTOR = 6.0
CONFIRM_TIME_FACTOR = 3.0


@dataclass(frozen=True)
class Timing:
    """How long each candidate is timed: ``measure.*`` (``Timing.of``), longer for a figure that must
    be more exact than a trial's (the anchor, the confirmation)."""

    warmup: int = 10
    min_repeats: int = 50  # per candidate, summed over rounds
    min_time_s: float = 0.5  # per candidate, summed over rounds
    rounds: int = 5
    max_wait_s: float = 0.0  # how long rejected rounds are re-run (with a keep_round test)

    @classmethod
    def of(cls, m: Any) -> Timing:
        return cls(m.warmup, m.min_repeats, m.min_time_s, m.rounds, m.max_wait_s)

    def longer(self, repeats: float = 1, time_s: float = 1, rounds: float = 1) -> Timing:
        return replace(
            self,
            min_repeats=int(self.min_repeats * repeats),
            min_time_s=self.min_time_s * time_s,
            rounds=int(self.rounds * rounds),
        )

    def for_anchor(self) -> Timing:
        return self.longer(LONGER_ROUNDS, ANCHOR_TIME_FACTOR, LONGER_ROUNDS)

    def for_confirmation(self) -> Timing:
        return self.longer(LONGER_ROUNDS, CONFIRM_TIME_FACTOR, LONGER_ROUNDS)


@dataclass(frozen=True)
class LatencyStats:
    batch_size: int
    n: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    std_ms: float
    round_p50_ms: tuple[float, ...]  # median of each interleaved round: the drift, visible
    rounds_rejected: int = 0  # rounds the ``keep_round`` test threw away (machine disturbed)
    disturbed: bool = False  # too few rounds passed it within ``max_wait_s``: all rounds were kept
    # cores' worth of CPU other processes used during each round kept (None: not measurable here)
    round_foreign_cores: tuple[float | None, ...] = ()

    @property
    def foreign_cores(self) -> float | None:
        known = [f for f in self.round_foreign_cores if f is not None]
        return statistics.median(known) if known else None

    @property
    def cv(self) -> float:
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0

    @property
    def per_sample_ms(self) -> float:
        return self.p50_ms / self.batch_size

    @property
    def throughput_per_s(self) -> float:
        return 1000.0 * self.batch_size / self.p50_ms

    def as_metrics(self) -> dict[str, float]:
        return {
            "latency_ms_p50": self.p50_ms,
            "latency_ms_p95": self.p95_ms,
            "latency_ms_per_sample": self.per_sample_ms,
            "throughput_per_s": self.throughput_per_s,
            "latency_cv": self.cv,
            "latency_repeats": self.n,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"cv": self.cv}


class Clock:
    """Wall clock on CPU, CUDA events on GPU: the only device-specific piece of timing."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"

    def stamp(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter_ns()

    def elapsed_ms(self, start, end) -> float:
        if self.cuda:
            return start.elapsed_time(end)
        return (end - start) / 1e6

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def _percentile(sorted_xs: list[float], q: float) -> float:
    idx = min(len(sorted_xs) - 1, max(0, round(q * (len(sorted_xs) - 1))))
    return sorted_xs[idx]


@dataclass(frozen=True)
class Round:
    """One finished round, as ``keep_round`` judges it: each candidate's median and what others used."""

    medians: dict[str, float]
    foreign_cores: float | None


def _stats(
    rounds: list[list[float]], batch_size: int, rejected: int = 0, disturbed: bool = False, foreign: tuple = ()
) -> LatencyStats:
    xs = sorted(t for rnd in rounds for t in rnd)
    return LatencyStats(
        batch_size=batch_size,
        n=len(xs),
        p50_ms=statistics.median(xs),
        p95_ms=_percentile(xs, 0.95),
        mean_ms=statistics.fmean(xs),
        std_ms=statistics.pstdev(xs) if len(xs) > 1 else 0.0,
        round_p50_ms=tuple(statistics.median(r) for r in rounds if r),
        rounds_rejected=rejected,
        disturbed=disturbed,
        round_foreign_cores=foreign,
    )


@torch.no_grad()
def measure_interleaved(
    fns: dict[str, Callable[[], Any]],
    batch_size: int,
    timing: Timing,
    device: str = "cpu",
    keep_round: Callable[[Round], bool] | None = None,
) -> dict[str, LatencyStats]:
    """Time each callable (one call = one batch) in alternating rounds.

    Each round runs every candidate until it has its share of ``min_repeats``
    calls and of ``min_time_s``; the order flips every round. On CUDA every
    call is bracketed by events and the device is synchronised before reading.
    ``keep_round`` judges each finished round (its per-candidate medians, the cores other processes
    took meanwhile: infersearch.measure.contention); a rejected
    round is replaced by another, for at most ``timing.max_wait_s`` after the first rejection,
    after which every round is kept and the result is marked ``disturbed``.
    """
    warmup, min_repeats, min_time_s, rounds = timing.warmup, timing.min_repeats, timing.min_time_s, timing.rounds
    max_wait_s = timing.max_wait_s
    clock = Clock(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    clock.sync()
    per_round_n = max(1, -(-min_repeats // rounds))
    per_round_s = min_time_s / rounds
    kept: dict[str, list[list[float]]] = {name: [] for name in fns}
    thrown: dict[str, list[list[float]]] = {name: [] for name in fns}
    foreign: dict[bool, list[float | None]] = {True: [], False: []}
    names, r, deadline = list(fns), 0, None
    while len(kept[names[0]]) < rounds:
        this_round, mark = {}, Mark.now()
        for name in names if r % 2 == 0 else reversed(names):
            fn, t_end, pending = fns[name], time.perf_counter() + per_round_s, []
            while len(pending) < per_round_n or time.perf_counter() < t_end:
                start = clock.stamp()
                fn()
                pending.append((start, clock.stamp()))
                if clock.cuda and len(pending) % 16 == 0:
                    clock.sync()  # keeps the wall-clock check honest on an async device
            clock.sync()
            this_round[name] = [clock.elapsed_ms(a, b) for a, b in pending]
        r += 1
        done = Round({n: statistics.median(t) for n, t in this_round.items()}, mark.foreign_cores(Mark.now()))
        ok = keep_round is None or keep_round(done)
        foreign[ok].append(done.foreign_cores)
        for name, times in this_round.items():
            (kept if ok else thrown)[name].append(times)
        if not ok:
            deadline = deadline or time.monotonic() + max_wait_s
            if time.monotonic() > deadline:
                break
    disturbed = len(kept[names[0]]) < rounds
    n_thrown = len(thrown[names[0]])
    loads = tuple(foreign[True] + foreign[False] if disturbed else foreign[True])
    return {
        name: _stats(kept[name] + thrown[name] if disturbed else kept[name], batch_size, n_thrown, disturbed, loads)
        for name in fns
    }
