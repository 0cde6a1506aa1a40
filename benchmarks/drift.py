"""Issue-10: is a study's latency robust to the shared machine's drift?

    python benchmarks/drift.py [--gap 20] [--result benchmarks/results/drift.json]

The same two configurations (prune 0.5 + int8 at batch 32, on ONNX Runtime and on eager PyTorch) are
measured in 5 separate studies started `--gap` seconds apart, twice: on the machine as it is (`quiet`),
and with a neighbour process that flips between busy (a one-thread matmul loop) and idle in stretches of
5 to 15 s for the whole series (`flipping`: the fast/slow states seen on these shared machines, made
stronger). Each study measures each configuration with the method (`measure.anchor=true`: ratio to the
baseline x cached anchor, disturbed rounds re-run; infersearch.measure.anchor) and without it
(`measure.anchor=false`: the median as timed), one after the other. Reports, per series and engine, the
CV across the 5 studies of the median per-sample latency each way. All studies share one cache, as a
user's runs do: the anchor is measured once, in the first study. Writes results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.report.table import table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "drift"
RESULT = ROOT / "benchmarks" / "results" / "drift.json"
STUDIES = 5
ENGINES = ("onnxruntime", "eager")
FIXED = ["prune.ratio=0.5", "quant.bits=8", "precision=fp32", "batch_size=32"]
NEIGHBOUR = """
import random, time, torch
torch.set_num_threads(1)
a, rng = torch.randn(384, 384), random.Random(0)
while True:
    end = time.monotonic() + rng.uniform(5, 15)
    while time.monotonic() < end:
        a @ a
    time.sleep(rng.uniform(5, 15))
"""


def cv(xs: list[float]) -> float:
    return statistics.pstdev(xs) / statistics.fmean(xs)


def run_study(name: str, cache: Path) -> dict[str, dict]:
    out = OUT / name
    subprocess.run(
        [
            sys.executable, "-m", "infersearch", "-m", "space=none", *FIXED, "engine=choice(eager,onnxruntime)",
            "measure.anchor=choice(true,false)",
            f"study.name={name}", f"study.output_dir={out}", f"cache_dir={cache}", "study.sampler=grid",
            "study.n_trials=4", "study.confirm=false", "study.export=false", "tracking=disabled",
        ],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
    return {
        (t.params["engine"], t.params["measure.anchor"]): t.user_attrs["metrics"]
        for t in study.get_trials(states=(TrialState.COMPLETE,))
    }


def series(label: str, gap: float, cache: Path, stamp: str) -> list[dict]:
    neighbour = None
    if label == "flipping":
        neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=os.environ | {"OMP_NUM_THREADS": "1"})
    runs = []
    try:
        for i in range(STUDIES):
            if i:
                time.sleep(gap)
            runs.append(run_study(f"drift-{label}-{stamp}-{i}", cache))
            line = []
            for e in ENGINES:
                on, off = runs[-1][(e, True)], runs[-1][(e, False)]
                line.append(
                    f"{e}: without {off['latency_ms_per_sample']:.4f}, with {on['latency_ms_per_sample']:.4f} ms "
                    f"(state {on['machine_state']:.2f}, {on['latency_rounds_rejected']} rounds re-run)"
                )
            print(f"{label} study {i + 1}: " + "; ".join(line), flush=True)
    finally:
        if neighbour:
            neighbour.kill()
            neighbour.wait()
    return runs


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gap", type=float, default=20.0, help="seconds between the starts of studies")
    parser.add_argument("--result", type=Path, default=RESULT, help="where to write the JSON result")
    args = parser.parse_args()
    stamp = time.strftime("%H%M%S")
    cache = OUT / f"cache-{stamp}"  # the anchor is measured in this run's first study
    out = {
        "cpu": capabilities("cpu").name,
        "configuration": FIXED,
        "studies": STUDIES,
        "gap_s": args.gap,
        "series": {},
    }
    rows = []
    for label in ("quiet", "flipping"):
        runs = series(label, args.gap, cache, stamp)
        out["series"][label] = {}
        for engine in ENGINES:
            raw = [r[(engine, False)]["latency_ms_per_sample"] for r in runs]
            anchored = [r[(engine, True)]["latency_ms_per_sample"] for r in runs]
            states = [r[(engine, True)]["machine_state"] for r in runs]
            out["series"][label][engine] = {
                "without_ms_per_sample": raw,
                "with_ms_per_sample": anchored,
                "machine_state": states,
                "rounds_rerun": [r[(engine, True)]["latency_rounds_rejected"] for r in runs],
                "disturbed": [r[(engine, True)]["machine_disturbed"] for r in runs],
                "cv_without_method": cv(raw),
                "cv_with_method": cv(anchored),
            }
            rows.append(
                [
                    label,
                    engine,
                    f"{min(states):.2f}-{max(states):.2f}",
                    f"{100 * cv(raw):.1f}%",
                    f"{100 * cv(anchored):.1f}%",
                ]
            )
    print(f"same configuration ({' '.join(FIXED)}) in {STUDIES} separate studies, {args.gap:.0f} s apart")
    print(table(["series", "engine", "machine state", "CV without method", "CV with method (anchored)"], rows))
    atomic_write_text(args.result, json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
