"""Issue-3 benchmark: the fp32 baseline against a few variants of a zoo model, timed
interleaved in one run (same machine state for all), at batch sizes 1 and 32.

    python benchmarks/compare_variants.py [model=digits_cnn] [measure.min_time_s=4]

Prints a table of latency ratios and accuracy drops and writes
benchmarks/results/compare_variants_<model>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from infersearch.compose import to_config
from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities, resolve
from infersearch.measure.latency import Timing, measure_interleaved
from infersearch.report.table import table
from infersearch.trial.evaluate import batch_of, build

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "fp32 (baseline)": [],
    "int8": ["quant.bits=8"],
    "prune 0.5 + int8": ["prune.ratio=0.5", "quant.bits=8"],
    "prune 0.5": ["prune.ratio=0.5"],
    "bf16": ["precision=bf16"],
}
BATCHES = (1, 32)


def main(overrides: list[str]) -> dict:
    built, cfg = {}, None
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name, extra in VARIANTS.items():
            dcfg = compose(
                "config",
                overrides=["study.name=bench", "measure.min_time_s=3", "measure.rounds=10", *overrides, *extra],
            )
            cfg = to_config(dcfg)
            built[name] = build(cfg, dcfg.model)
    base_acc = built["fp32 (baseline)"].quality[0]
    device = resolve(cfg.device.value)
    m = cfg.measure
    rows, results = [], []
    for bs in BATCHES:
        fns = {}
        for name, b in built.items():
            native = b.runner.prepare(batch_of(b.task, bs))
            fns[name] = (lambda run, x: lambda: run(x))(b.runner.run, native)
        stats = measure_interleaved(fns, bs, Timing.of(m), device)
        ref = stats["fp32 (baseline)"].p50_ms
        for name, st in stats.items():
            drop = 100 * (base_acc - built[name].quality[0])
            emulated = built[name].qplan.emulated
            rows.append(
                [name, bs, st.p50_ms, st.cv, f"{ref / st.p50_ms:.2f}x", drop, "emulated" if emulated else "real"]
            )
            results.append(
                {
                    "variant": name,
                    "batch_size": bs,
                    "latency": st.to_dict(),
                    "speedup": ref / st.p50_ms,
                    "accuracy": built[name].quality[0],
                    "test_accuracy": built[name].quality[1],
                    "accuracy_drop_points": drop,
                    "kernels": "emulated" if emulated else "real",
                }
            )
    caps = capabilities(device)
    machine = {"device": caps.device, "name": caps.name, "threads": torch.get_num_threads(), "torch": torch.__version__}
    model = built["fp32 (baseline)"].task.name
    print(f"{model} on {caps.name}, {machine['threads']} threads, torch {torch.__version__}")
    print(table(["variant", "batch", "p50 ms", "CV", "speed-up vs fp32", "acc drop (pts)", "kernels"], rows))
    out = {"model": model, "machine": machine, "results": results}
    path = ROOT / "benchmarks" / "results" / f"compare_variants_{out['model']}.json"
    atomic_write_text(path, json.dumps(out, indent=2))
    print(f"written: {path.relative_to(ROOT)}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
