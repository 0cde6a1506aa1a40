"""Plain-text tables for the console."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *map(line, cells)])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != 0 and (abs(v) < 0.01 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


_SPEED = [  # label, metric key, lower is better
    ("latency p50 ms", "latency_ms_p50", True),
    ("latency p95 ms", "latency_ms_p95", True),
    ("per-sample ms", "latency_ms_per_sample", True),
    ("throughput /s", "throughput_per_s", False),
]
_GENERATION = [  # a language model's decode step and prefill (infersearch.measure.generation)
    ("TPOT ms (p50)", "tpot_ms", True),
    ("decode step p95 ms", "latency_ms_p95", True),
    ("tokens/s", "tokens_per_s", False),
    ("TTFT ms (p50)", "ttft_ms", True),
    ("TTFT p95 ms", "ttft_ms_p95", True),
]
_REST = [
    ("latency CV", "latency_cv", True),
    ("size MB", "size_mb", True),
    ("params", "params", True),
    ("MACs", "macs", True),
]


def trial_table(result: dict[str, Any]) -> str:
    """The variant's figures beside the unoptimized baseline's; gain > 1 is better."""
    m, b = result["metrics"], result["baseline"]
    name, lower = result["metric"]["name"], result["metric"]["direction"] == "minimize"
    speed = _GENERATION if "tpot_ms" in m else _SPEED
    rows = []
    for label, key, lower_better in (
        [(f"{name} (val)", name, lower), (f"test {name}", f"test_{name}", lower)] + speed + _REST
    ):
        v, r = m.get(key), b.get(key)
        gain = ""
        if v and r:
            gain = f"{(r / v if lower_better else v / r):.2f}x"
        rows.append([label, "-" if r is None else r, "-" if v is None else v, gain])
    return table(["metric", "baseline (fp32 eager)", "variant", "gain"], rows)
