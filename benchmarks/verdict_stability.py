"""Issue 14: is a scheduled study's verdict stable from run to run, with W&B logging on and off?

    python benchmarks/verdict_stability.py [--runs 6] [--first 8] [--step 2] [model=...]

One study on the default space is run, then topped up ``--runs - 1`` times by ``--step`` trials (the
nightly job's pattern: nothing about the model or the machine changes), once with W&B logging on
(offline, the default) and once with ``tracking=disabled``, each series in a fresh study on one shared
cache. Per run: exit status, the recommended trial, its confirmed latency, the noise margin the verdict
used, and what the check before issue 14 would have said of the same two consecutive recommendations
(each objective against the previous stored value, fixed tolerances: accuracy 0.5%, latency 15%).
Writes results/verdict_stability.json and prints one table per series, with the CPU named.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import optuna

from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.report.table import table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "verdict_stability"
RESULT = ROOT / "benchmarks" / "results" / "verdict_stability.json"
OLD_TOLERANCE = {"accuracy": 0.005, "latency_ms_per_sample": 0.15}


def old_check(before: dict, now: dict) -> str:
    """The regression check as it was: each objective against the previous stored value, fixed tolerances."""
    for name, tol in OLD_TOLERANCE.items():
        old, new = before["values"][name], now["values"][name]
        worse = new < old - tol * abs(old) if name == "accuracy" else new > old + tol * abs(old)
        if worse:
            return f"5 ({name} {new:.4g} vs {old:.4g})"
    return "0"


def series(tracking: str, args, overrides: list[str]) -> list[dict]:
    name = f"verdict-{tracking}"
    out = OUT / name
    rows = []
    for i in range(args.runs):
        n = args.first + i * args.step
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "infersearch", "-m", f"study.name={name}", f"study.output_dir={out}",
             f"study.n_trials={n}", f"tracking={tracking}", f"cache_dir={OUT / 'cache'}", *overrides],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
        recs = study.user_attrs.get("recommendations", [])
        rec = recs[-1] if recs else {}
        text = proc.stdout + proc.stderr
        verdict = next((ln.split("] ", 1)[-1] for ln in text.splitlines() if "previous run's" in ln), "")
        rows.append(
            {
                "run": i + 1,
                "n_trials": n,
                "exit": proc.returncode,
                "recommended": rec.get("trial"),
                "params": rec.get("params"),
                "latency_ms_per_sample": rec.get("values", {}).get("latency_ms_per_sample"),
                "accuracy": rec.get("values", {}).get("accuracy"),
                "spread": rec.get("spread"),
                "kept_previous": "kept the previous recommendation" in text,
                "old_check": old_check(recs[-2], rec) if len(recs) > 1 else "",
                "verdict": verdict,
                "wall_s": wall,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        if proc.returncode not in (0, 5):
            print(text[-3000:], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--first", type=int, default=8)
    parser.add_argument("--step", type=int, default=2)
    parser.add_argument("--result", type=Path, default=RESULT)
    args, overrides = parser.parse_known_args()
    cpu = capabilities("cpu").name
    results = {"cpu": cpu, "host": platform.node(), "overrides": overrides, "series": {}}
    for tracking in ("wandb", "disabled"):
        results["series"][tracking] = series(tracking, args, overrides)
    atomic_write_text(args.result, json.dumps(results, indent=2))
    print(f"\nCPU: {cpu}")
    for tracking, rows in results["series"].items():
        print(f"\ntracking={tracking}")
        headers = ["run", "trials", "exit", "recommended", "ms/sample", "change %", "margin %", "kept", "old check"]
        body = []
        for prev, r in zip([None, *rows], rows):
            change = margin = ""
            if prev is not None:  # as regression.py: 3 x the combined per-round spreads, on log latency
                change = f"{100 * (r['latency_ms_per_sample'] / prev['latency_ms_per_sample'] - 1):+.1f}"
                margin = f"{100 * math.expm1(3 * math.hypot(r['spread'], prev['spread'])):.0f}"
            body.append([r["run"], r["n_trials"], r["exit"], r["recommended"], f"{r['latency_ms_per_sample']:.4g}",
                         change, margin, r["kept_previous"], r["old_check"]])  # fmt: skip
        print(table(headers, body))


if __name__ == "__main__":
    main()
