"""Issue-10 benchmark 2: the default study's wall time with the cache against without it, side by
side in one run, and the share of each trial's time spent outside model work (harness overhead).

    python benchmarks/study_wall_time.py [n_trials=10]

"Without" gives every trial its own empty cache (`cache_dir=.../${hydra:job.num}`): each trial trains
the baseline and prunes+recovers from scratch, as a tool without content-addressed caching would.
"With" shares one cache that a first pass warmed. Same seed, same space, same trials.
Writes results/study_wall_time.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infersearch.core.cache import atomic_write_text
from infersearch.report.table import table

ROOT = Path(__file__).resolve().parents[1]
WORK = ("baseline", "prune", "recover", "engine", "accuracy", "latency")


def study(name: str, out: Path, cache: str, n: int) -> float:
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "infersearch",
            "-m",
            f"study.name={name}",
            f"study.output_dir={out / name}",
            f"study.n_trials={n}",
            f"cache_dir={cache}",
            "tracking=disabled",
            "study.export=false",
        ],
        cwd=ROOT,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - t0


def overhead(out: Path, name: str) -> dict[str, float]:
    """Per trial: the job's duration against the time its model work took (timings stored in the study)."""
    import optuna

    st = optuna.load_study(study_name=name, storage=f"sqlite:///{out / name / 'study.db'}")
    shares, durations = [], []
    for t in st.trials:
        timings = t.user_attrs.get("timings_s")
        if not t.user_attrs.get("measured") or not timings or t.duration is None:
            continue
        total = t.duration.total_seconds()
        work = sum(timings.get(k, 0.0) for k in WORK)
        shares.append(max(0.0, 1 - work / total))
        durations.append(total)
    return {
        "median_overhead_share": statistics.median(shares),
        "median_trial_s": statistics.median(durations),
        "trials": len(shares),
    }


def main(n: int = 10) -> dict:
    out = Path(tempfile.mkdtemp(prefix="infersearch-wall-"))
    without = study("nocache", out, str(out / "nocache-cache" / "${hydra:job.num}"), n)
    shared = str(out / "shared-cache")
    warm_up = study("warmup", out, shared, n)
    with_cache = study("cached", out, shared, n)
    rows = [
        ["without cache", n, without],
        ["with cache (first pass, cold)", n, warm_up],
        ["with cache (warm)", n, with_cache],
    ]
    result = {
        "n_trials": n,
        "without_cache_s": without,
        "cold_cache_s": warm_up,
        "warm_cache_s": with_cache,
        "speedup_warm_vs_without": without / with_cache,
        "overhead_warm": overhead(out, "cached"),
        "overhead_without": overhead(out, "nocache"),
    }
    print(table(["study", "trials", "wall s"], rows))
    print(
        f"caching: {result['speedup_warm_vs_without']:.1f}x faster; harness overhead (warm cache): "
        f"{100 * result['overhead_warm']['median_overhead_share']:.0f}% of a trial's time "
        f"(median trial {result['overhead_warm']['median_trial_s']:.2f} s)"
    )
    atomic_write_text(ROOT / "benchmarks" / "results" / "study_wall_time.json", json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*(int(a.split("=")[1]) for a in sys.argv[1:]))
