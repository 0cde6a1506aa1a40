"""A trial's peak memory does not grow with the validation set: it is read batch by batch.

    python benchmarks/data_memory.py

Runs the same trial (tiny digits CNN, prune 0.5 + recovery, int8, batch 8, in one process:
isolate=false) with its validation split 1x, 10x and 100x the digits validation set, each a lazy
Dataset that makes sample i from validation image i % n with a small deterministic shift (nothing is
materialised), and records each run's peak RSS (the child's ru_maxrss from wait4). Target: 10x within
15% of 1x. Writes results/data_memory.json with the CPU's name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.models import digits_cnn
from infersearch.models.task import Split, Task

ROOT = Path(__file__).resolve().parents[1]
FACTORS = (1, 10, 100)
TRIAL = [
    "model=digits_cnn",
    "model._target_=benchmarks.data_memory.task",
    "model.width=16",
    "model.blocks=1",
    "model.epochs=10",
    "prune.ratio=0.5",
    "recover.epochs=2",
    "quant.bits=8",
    "batch_size=8",
    "measure.min_time_s=0.2",
    "isolate=false",
    "tracking=disabled",
]


class Repeated(Dataset):
    """``factor`` x the split's samples, each made on access: image ``i % n`` rolled by ``i // n`` pixels."""

    def __init__(self, split: Split, factor: int) -> None:
        self.base, self.factor = split.data, factor

    def __len__(self) -> int:
        return len(self.base) * self.factor

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i % len(self.base)]
        return torch.roll(x, shifts=(i // len(self.base)) % 3, dims=-1), y


def task(repeat: int = 1, **kwargs) -> Task:
    """digits_cnn with its validation split ``repeat`` times larger, through a DataLoader."""
    t = digits_cnn.task(**kwargs)
    val = Split(DataLoader(Repeated(t.splits.val, repeat), batch_size=256))
    t.splits = type(t.splits)(val=val, test=t.splits.test, train=t.splits.train)
    return t


def run_trial(factor: int, cache: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "infersearch", *TRIAL, f"+model.repeat={factor}"]
    cmd += [f"cache_dir={cache}", f"hydra.run.dir={out / str(factor)}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"trial with {factor}x validation failed:\n{stdout[-3000:]}")
    result = json.loads((out / str(factor) / "trial.json").read_text())
    return {
        "val_samples": 360 * factor,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "wall_s": time.perf_counter() - t0,
        "evaluate_s": result["timings_s"]["evaluate"],
        "val_accuracy": result["metrics"]["accuracy"],
        "baseline_val_accuracy": result["baseline"]["accuracy"],
    }


def main() -> dict:
    work = Path(tempfile.mkdtemp(prefix="infersearch-data-mem-"))
    cache = work / "cache"
    run_trial(1, cache, work / "warm")  # trains the baseline and the pruned model once: both runs load them
    runs = {f"{f}x": run_trial(f, cache, work) for f in FACTORS}
    ratio = runs["10x"]["peak_rss_mb"] / runs["1x"]["peak_rss_mb"]
    out = {
        "cpu": capabilities("cpu").name,
        "trial": TRIAL,
        "runs": runs,
        "peak_rss_ratio_10x_to_1x": ratio,
        "peak_rss_ratio_100x_to_1x": runs["100x"]["peak_rss_mb"] / runs["1x"]["peak_rss_mb"],
        "target": "10x within 15% of 1x",
        "met": ratio <= 1.15,
    }
    atomic_write_text(ROOT / "benchmarks" / "results" / "data_memory.json", json.dumps(out, indent=2))
    for name, r in runs.items():
        print(f"{name:>5}: {r['val_samples']:6d} val samples, peak RSS {r['peak_rss_mb']:.1f} MB, "
              f"evaluate {r['evaluate_s']:.2f} s, val accuracy {r['val_accuracy']:.4f}")  # fmt: skip
    print(f"{out['cpu']}: peak RSS 10x / 1x = {ratio:.3f} (target <= 1.15)")
    return out


if __name__ == "__main__":
    main()
