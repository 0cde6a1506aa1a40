"""Issue-9 benchmark: the sweeper process's resident memory over a long study.

    python benchmarks/sweeper_memory.py [n_trials=100]

Runs a study of n_trials on the tiny diagnosis_mlp (continuous prune ratio, so no configuration is
reused) as a subprocess, samples the sweeper's RSS after every finished trial, and reports RSS at
trial 20 and at the end. Target: within 20% between the two. Writes results/sweeper_memory.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from infersearch.core.cache import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(n_trials: int = 100) -> dict:
    out = Path(tempfile.mkdtemp(prefix="infersearch-mem-"))
    storage = f"sqlite:///{out / 'study.db'}"
    cmd = [
        sys.executable,
        "-m",
        "infersearch",
        "-m",
        "model=diagnosis_mlp",
        "study.name=mem",
        f"study.storage={storage}",
        f"study.output_dir={out}",
        f"study.n_trials={n_trials}",
        "space=none",
        "prune.ratio=interval(0.0,0.9)",
        "batch_size=choice(1,8,32)",
        "engine=eager",
        "quant.bits=32",
        "precision=fp32",
        "recover.epochs=1",
        "study.max_drop=null",
        "measure.min_time_s=0.05",
        "measure.min_repeats=10",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: dict[int, float] = {}
    t0 = time.monotonic()
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            done = sum(
                1 for t in optuna.load_study(study_name="mem", storage=storage).trials if t.user_attrs.get("measured")
            )
        except (KeyError, Exception):  # noqa: BLE001 - the study may not exist yet
            continue
        rss = rss_mb(proc.pid)
        if rss is not None:
            samples.setdefault(done, rss)
    at20 = samples.get(20) or samples[min(k for k in samples if k >= 20)]
    last = samples[max(samples)]
    result = {
        "n_trials": n_trials,
        "wall_s": time.monotonic() - t0,
        "rss_mb_at_20": at20,
        "rss_mb_at_end": last,
        "growth_20_to_end": last / at20 - 1,
        "samples": samples,
        "exit": proc.returncode,
    }
    print(
        f"sweeper RSS: {at20:.0f} MB at trial 20, {last:.0f} MB at trial {max(samples)} "
        f"({100 * result['growth_20_to_end']:+.1f}%), {result['wall_s']:.0f} s, exit {proc.returncode}"
    )
    atomic_write_text(ROOT / "benchmarks" / "results" / "sweeper_memory.json", json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*(int(a.split("=")[1]) for a in sys.argv[1:]))
