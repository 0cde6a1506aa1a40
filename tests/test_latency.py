from __future__ import annotations

import time

from infersearch.measure.latency import Timing, measure_interleaved


def test_interleaved_timing_returns_a_spread_and_meets_its_minimums():
    def slow():
        time.sleep(0.002)

    def fast():
        sum(range(1000))

    timing = Timing(warmup=2, min_repeats=20, min_time_s=0.1, rounds=4)
    stats = measure_interleaved({"slow": slow, "fast": fast}, 4, timing)
    s, f = stats["slow"], stats["fast"]
    assert s.n >= 20 and f.n >= 20
    assert len(s.round_p50_ms) == 4
    assert s.p95_ms >= s.p50_ms > 1.9  # sleep(2 ms) can't be faster than 2 ms
    assert f.p50_ms < s.p50_ms
    assert s.std_ms > 0 and s.cv > 0
    assert abs(s.per_sample_ms - s.p50_ms / 4) < 1e-9
    assert abs(s.throughput_per_s - 4000 / s.p50_ms) < 1e-6
    # the fast callable got more calls in the same time share
    assert f.n > s.n
