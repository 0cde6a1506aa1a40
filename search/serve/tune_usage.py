"""What a served setting costs the machine: the server process's CPU over a load and its resident memory,
read from the operating system (psutil), so serve-tune can weigh a setting's goodput against its footprint."""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass
class Usage:
    """The server process (its batch threads included) during serve-tune's measurements of one setting."""

    pid: int
    cpu_s: float = 0.0  # CPU seconds (user + system) over the saturation load
    elapsed_s: float = 0.0
    requests: int = 0
    rss_mb: float = 0.0  # the largest resident set seen after a load

    def _cpu(self) -> float:
        t = psutil.Process(self.pid).cpu_times()
        return t.user + t.system

    def sample_rss(self) -> None:
        self.rss_mb = max(self.rss_mb, psutil.Process(self.pid).memory_info().rss / 2**20)

    def over(self, load, *args, **kwargs):
        """Run ``load(*args, **kwargs)`` (a LoadResult) and count the server's CPU over it."""
        before = self._cpu()
        result = load(*args, **kwargs)
        self.cpu_s, self.elapsed_s, self.requests = self._cpu() - before, result.elapsed_s, result.ok
        self.sample_rss()
        return result

    def summary(self) -> dict[str, float]:
        return {
            "cpu_cores": round(self.cpu_s / self.elapsed_s, 2) if self.elapsed_s else 0.0,  # busy cores at saturation
            "cpu_ms_per_request": round(1000 * self.cpu_s / self.requests, 3) if self.requests else 0.0,
            "rss_mb": round(self.rss_mb, 1),
        }
