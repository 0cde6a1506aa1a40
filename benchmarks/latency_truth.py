"""Issue-10 benchmark 3: is the project's latency true and repeatable?

    python benchmarks/latency_truth.py [model=digits_cnn] [prune.ratio=0.5 quant.bits=8 engine=onnxruntime ...]

(a) The same configuration measured 5 times (the trial's own harness, interleaved with the baseline):
    CV of the 5 medians, of the raw latency and of the latency derived as measure.anchor does: the
    median per-round ratio to the baseline timed in the same rounds, times one fixed baseline figure.
(b) Agreement of the harness's median with torch.utils.benchmark.Timer.blocked_autorange on the same
    model and input. Writes results/latency_truth.json.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch.utils import benchmark

from infersearch.compose import to_config
from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.measure.anchor import round_ratio
from infersearch.measure.latency import Timing, measure_interleaved
from infersearch.report.table import table
from infersearch.trial.evaluate import batch_of, build

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5


def cv(xs: list[float]) -> float:
    return statistics.pstdev(xs) / statistics.fmean(xs)


def main(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        dcfg = compose("config", overrides=["study.name=truth", *overrides])
    cfg = to_config(dcfg)
    built = build(cfg, dcfg.model)
    base = built.base.fresh()
    rows, results = [], {}
    for bs in (1, 32):
        x = batch_of(built.task, bs)
        native = built.runner.prepare(x)
        fns = {"variant": lambda: built.runner.run(native), "baseline": lambda: base(x)}
        m = cfg.measure
        raw, base_p50, ratios = [], [], []
        for _ in range(REPEATS):
            st = measure_interleaved(fns, bs, Timing.of(m))
            raw.append(st["variant"].p50_ms)
            base_p50.append(st["baseline"].p50_ms)
            ratios.append(round_ratio(st["variant"], st["baseline"]))
        ratio = [r * statistics.median(base_p50) for r in ratios]  # as measure.anchor derives it
        with torch.no_grad():
            timer = benchmark.Timer(stmt="fn()", globals={"fn": fns["variant"]}, num_threads=torch.get_num_threads())
            ref = timer.blocked_autorange(min_run_time=2.0).median * 1000
        agree = statistics.median(raw) / ref - 1
        results[bs] = {
            "p50_ms": raw,
            "baseline_p50_ms": base_p50,
            "cv_raw": cv(raw),
            "cv_ratio_derived": cv(ratio),
            "torch_benchmark_median_ms": ref,
            "agreement": agree,
        }
        rows.append(
            [
                bs,
                statistics.median(raw),
                f"{100 * cv(raw):.1f}%",
                f"{100 * cv(ratio):.1f}%",
                ref,
                f"{100 * agree:+.1f}%",
            ]
        )
    print(f"{built.task.name} {' '.join(overrides)}: {REPEATS} repeats, {torch.get_num_threads()} threads")
    print(
        table(
            ["batch", "median ms", "CV of medians", "CV ratio-derived", "torch.utils.benchmark ms", "agreement"], rows
        )
    )
    out = {"overrides": overrides, "repeats": REPEATS, "threads": torch.get_num_threads(), "results": results}
    out["cpu"] = capabilities("cpu").name
    atomic_write_text(ROOT / "benchmarks" / "results" / "latency_truth.json", json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
