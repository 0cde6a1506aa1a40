"""Issue 14: does W&B in the sweeper's process disturb latency rounds timed there or in a trial's child?

    python benchmarks/wandb_disturbance.py [--repeats 8] [model=...] [engine=onnxruntime] ...

One variant (default: prune 0.5 + int8 at batch 32 on ONNX Runtime, the config whose confirmation
flipped in the issue) and the fp32 baseline are timed side by side as the Pareto confirmation times them
(2x rounds, 3x time), ``--repeats`` times per condition; the figure is the median per-round ratio,
and its spread across repeats is the noise a verdict must live with. Conditions, in one process:
- ``clean``: wandb never imported;
- ``wandb alive``: after logging 5 offline runs the way the sweeper logs trials (init ... finish): the
  client's asyncio thread and the ``wandb-core`` process outlive ``finish``; this is where the
  confirmation used to time;
- ``child, wandb alive``: the same rounds in a forkserver child, the parent as above (how trials, and now
  the confirmation, run);
- ``after teardown``: ``wandb.teardown()`` stops the service.
Also records the threads alive and the CPU seconds ``wandb-core`` used during each condition.
Writes results/wandb_disturbance.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.report.table import table
from infersearch.trial.isolation import run_isolated

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "wandb_disturbance.json"
DEFAULT = ["engine=onnxruntime", "prune.ratio=0.5", "quant.bits=8", "batch_size=32", "tracking=disabled"]


def time_ratios(overrides: list[str], repeats: int) -> list[float]:
    """Build the variant and baseline once, then ``repeats`` confirmation-sized side-by-side timings."""
    import torch

    from infersearch.compose import to_config
    from infersearch.measure.anchor import round_ratio
    from infersearch.measure.latency import Timing, measure_interleaved
    from infersearch.trial.evaluate import batch_of, build

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["study.name=disturb", *overrides])
    typed = to_config(cfg)
    built = build(typed, cfg.model)
    x = batch_of(built.task, typed.batch_size)
    native, reference = built.runner.prepare(x), built.base.fresh()
    fns = {"variant": lambda: built.runner.run(native), "baseline": lambda: reference(x)}
    m, out = typed.measure, []
    torch.set_num_threads(torch.get_num_threads())
    for _ in range(repeats):
        s = measure_interleaved(fns, typed.batch_size, Timing.of(m).longer(2, 3, 2))
        out.append(round_ratio(s["variant"], s["baseline"]))
    return out


def core_cpu_s() -> float:
    import psutil

    procs = [p for p in psutil.Process().children(recursive=True) if "wandb-core" in p.name()]
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def log_runs(n: int, out_dir: Path) -> None:
    import wandb

    settings = wandb.Settings(silent=True, console="off", save_code=False, x_disable_stats=True)
    for i in range(n):
        run = wandb.init(mode="offline", project="disturb", dir=str(out_dir), reinit="create_new", settings=settings)
        run.summary.update({"trial": i, "latency": 0.01})
        run.finish()


def condition(name: str, fn, results: dict) -> None:
    cpu0 = core_cpu_s()
    ratios = fn()
    results[name] = {
        "ratios": ratios,
        "median": statistics.median(ratios),
        "cv": statistics.pstdev(ratios) / statistics.fmean(ratios),
        "max_over_min": max(ratios) / min(ratios),
        "threads": sorted(t.name for t in threading.enumerate()),
        "wandb_core_cpu_s": core_cpu_s() - cpu0,
    }
    print(name, json.dumps({k: v for k, v in results[name].items() if k != "ratios"}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--result", type=Path, default=RESULT)
    args, overrides = parser.parse_known_args()
    overrides = [*DEFAULT, *overrides]
    results: dict = {}
    t0 = time.perf_counter()
    condition("clean", lambda: time_ratios(overrides, args.repeats), results)
    assert "wandb" not in sys.modules
    log_runs(5, ROOT / "outputs" / "disturb")
    condition("wandb alive", lambda: time_ratios(overrides, args.repeats), results)
    condition("child, wandb alive", lambda: run_isolated(time_ratios, overrides, args.repeats), results)
    import wandb

    wandb.teardown()
    condition("after teardown", lambda: time_ratios(overrides, args.repeats), results)
    cpu = capabilities("cpu").name
    atomic_write_text(args.result, json.dumps({"cpu": cpu, "overrides": overrides, "conditions": results}, indent=2))
    print(f"\nCPU: {cpu}; {args.repeats} confirmation-sized timings per condition, {time.perf_counter() - t0:.0f} s")
    rows = [
        [k, f"{v['median']:.4f}", f"{100 * v['cv']:.2f}%", f"{v['max_over_min']:.3f}", len(v["threads"]),
         f"{v['wandb_core_cpu_s']:.2f}"]
        for k, v in results.items()
    ]  # fmt: skip
    print(table(["condition", "median ratio", "CV", "max/min", "threads", "wandb-core CPU s"], rows))


if __name__ == "__main__":
    main()
