"""How many cores other programs took while we timed: the direct sign of a busy machine.

A neighbour (a build, a browser, another VM stealing the host's cores) slows kernels unequally: two
OpenMP threads of the fp32 baseline on two busy cores slow far more than ONNX Runtime's, so a ratio
timed then is wrong, and a reference timed then is wrong for every figure derived from it. The
baseline's own speed cannot tell a slow moment from a slow machine; the kernel's accounting can:
``/proc/stat`` counts every core's busy time (steal included: the hypervisor's other guests), and
``os.times`` counts ours. What others used is the difference. A round is clean when the cores left
free by others still cover the threads we time with (``free_for``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# /proc/stat cpu line: user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
_BUSY = (0, 1, 2, 5, 6, 7)


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    return sum(int(fields[i]) for i in _BUSY if i < len(fields)) / _TICK


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class Mark:
    wall: float
    machine: float | None
    own: float

    @classmethod
    def now(cls) -> Mark:
        return cls(time.monotonic(), _machine_busy_s(), _own_cpu_s())

    def foreign_cores(self, end: Mark) -> float | None:
        """Cores' worth of CPU that other processes used between this mark and ``end`` (None off Linux
        or over an instant too short for the kernel's 10 ms ticks)."""
        wall = end.wall - self.wall
        if self.machine is None or end.machine is None or wall < 0.05:
            return None
        return max(0.0, (end.machine - self.machine) - (end.own - self.own)) / wall


def cores() -> int:
    return os.cpu_count() or 1


def free_for(foreign: float | None, threads: int, allowance: float) -> bool:
    """Whether ``threads`` still had their cores: what others took fits in the cores we leave idle,
    plus ``allowance`` (the quiet machine's own housekeeping)."""
    return foreign is None or foreign <= max(0, cores() - threads) + allowance
