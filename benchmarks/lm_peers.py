"""The recipes people deploy language models with, against infersearch's pick: one machine, one run, every
contestant's decode step (TPOT) and prefill (TTFT) timed interleaved with fp32 eager at each concurrency.

Contestants, each applied to the whole unpruned model exactly as its documentation runs it: torchao's CPU
path (weight-only int8 / int4 g128 on the bf16 model, then ``torch.compile``), ONNX Runtime's
``MatMulNBits`` int4 (block 128, accuracy level 4) and dynamic int8 on our export, onnxruntime-genai's model
builder ``-p int4 -e cpu`` with its defaults, and optimum-intel's default int4 / int8 weight recipes through
NNCF on our OpenVINO export, which has optimum-intel's form (stateful, OpenVINO's own attention op, the CPU
plugin's default KV cache precision; optimum-intel itself pulls torch 2.14 here). infersearch's pick is
the study's recommendation (``study.*`` overrides go to the study), rebuilt from its stored config and timed
at each concurrency. Tuning time: the peers' quantize + compile; infersearch's, the study's wall time.

    python benchmarks/peers.py model=pydocs_llama [study.n_trials=30] [--reuse=outputs/pydocs_llama]

Run from the repository root (the baseline cache is outputs/cache). Writes
benchmarks/results/peers_<model>.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from peers import run_study  # noqa: E402 - benchmarks/ is this script's folder

from infersearch.compose import to_config
from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.measure.latency import Timing, measure_interleaved
from infersearch.report.table import table
from infersearch.trial.evaluate import batch_of, build

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8)
MAX_RISE = 0.05  # perplexity, relative: the study's default budget for a language model
PEERS = {  # name: the overrides that are exactly torchao's documented recipe on the unpruned model
    "torchao int8 weight-only (bf16, compiled)": ["quant.bits=8", "precision=bf16", "engine=compile"],
    "torchao int4 weight-only g128 (bf16, compiled)": [
        "quant.bits=4",
        "quant.group_size=128",
        "precision=bf16",
        "engine=compile",
    ],
    # ONNX Runtime's LLM recipe on CPU (LM-NOTES): int4 MatMulNBits, block 128, accuracy level 4
    "ONNX Runtime int4 MatMulNBits block 128": ["quant.bits=4", "quant.group_size=128", "engine=onnxruntime"],
    "ONNX Runtime dynamic int8": ["quant.bits=8", "engine=onnxruntime"],
    # onnxruntime-genai's model builder `-p int4 -e cpu` with its defaults (block 32, accuracy level 4, symmetric)
    "onnxruntime-genai builder int4 (defaults)": [
        "quant.bits=4",
        "quant.group_size=32",
        "quant.accuracy_level=4",
        "quant.symmetric=true",
        "engine=onnxruntime_genai",
    ],
    # optimum-intel's `--weight-format int4` / `int8` weights (NNCF int4 asymmetric, group 128; int8 asymmetric
    # per channel) on our stateful export (optimum-intel's form): optimum-intel itself pulls torch 2.14 here
    "OpenVINO NNCF int4 asym g128 (optimum-intel's default weights)": [
        "quant.bits=4",
        "quant.group_size=128",
        "quant.symmetric=false",
        "engine=openvino",
    ],
    "OpenVINO NNCF int8 (optimum-intel's int8 weights)": ["quant.bits=8", "engine=openvino"],
}
FIXED = ["prune.ratio=0.0", "prune.depth=0.0", "quant.bits=32", "precision=fp32", "engine=eager", "batch_size=1"]


@dataclass
class Contestant:
    name: str
    built: Any
    tune_s: float


def _cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        d = compose("config", overrides=["study.name=lm-peers", "tracking=disabled", *overrides])
    return to_config(d), d


def contestant(name: str, overrides: list[str], tune_s: float | None = None) -> Contestant:
    cfg, d = _cfg(overrides)
    t0 = time.perf_counter()
    built = build(cfg, d.model)
    return Contestant(name, built, time.perf_counter() - t0 if tune_s is None else tune_s)


def time_all(cs: list[Contestant], bs: int, timing: Timing) -> dict[str, dict[str, Any]]:
    """Per contestant: the decode step's and the prefill's stats, each phase interleaved across contestants."""
    x = batch_of(cs[0].built.task, bs)
    steps = {c.name: (lambda r, s: lambda: r.run(s))(c.built.runner, c.built.runner.prepare(x)) for c in cs}
    prefills = {c.name: (lambda r: lambda: r.prefill(x))(c.built.runner) for c in cs}
    decode, prefill = measure_interleaved(steps, bs, timing), measure_interleaved(prefills, bs, timing)
    return {c.name: {"decode": decode[c.name], "prefill": prefill[c.name]} for c in cs}


def reused(folder: Path) -> tuple[dict, float]:
    """A finished study's recommendation and its wall time (first trial start to last trial end)."""
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{folder / 'study.db'}")
    trials = [t for t in study.trials if t.datetime_start and t.datetime_complete]
    took = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return json.loads((folder / "recommendation.json").read_text()), took


def main(overrides: list[str]) -> dict:
    load_start = os.getloadavg()
    reuse = next((Path(o.split("=", 1)[1]) for o in overrides if o.startswith("--reuse=")), None)
    overrides = [o for o in overrides if not o.startswith("--reuse=")]
    model = [o for o in overrides if not o.startswith("study.")]
    if reuse is not None:  # a default study already run (its trials' wall time is the tuning time)
        rec, study_s = reused(reuse)
    else:
        with tempfile.TemporaryDirectory(prefix="lm-peers-") as tmp:
            rec, study_s = run_study(
                "lm-peers", ["tracking=disabled", *overrides], Path(tmp) / "study", "recommendation.json"
            )
    ours = [f"{k}={v}" for k, v in _params(rec).items()]
    eager = contestant("fp32 eager", [*model, *FIXED], 0.0)
    cs = [eager, *(contestant(n, [*model, *FIXED, *o]) for n, o in PEERS.items())]
    cs.append(contestant(f"infersearch pick (trial {rec['number']})", [*model, *FIXED, *ours], study_s))
    base_ppl = eager.built.base.val_metric
    cfg, _ = _cfg(model)
    timing = Timing.of(cfg.measure).longer(2, 2, 1)
    rows, results = [], []
    for bs in CONCURRENCY:
        stats = time_all(cs, bs, timing)
        ref = stats["fp32 eager"]
        for c in cs:
            s, ppl = stats[c.name], c.built.quality[0]
            tpot, ttft = s["decode"].p50_ms, s["prefill"].p50_ms
            up = ref["decode"].p50_ms / tpot, ref["prefill"].p50_ms / ttft
            within = ppl <= base_ppl * (1 + MAX_RISE)
            rows.append([c.name, bs, tpot, f"{up[0]:.2f}x", ttft, f"{up[1]:.2f}x", ppl,
                         "yes" if within else "NO", c.tune_s])  # fmt: skip
            results.append({"contestant": c.name, "concurrency": bs, "tpot_ms": tpot, "ttft_ms": ttft,
                            "tpot_speedup": up[0], "ttft_speedup": up[1], "perplexity": ppl,
                            "within_budget": within, "tuning_s": c.tune_s, "decode": s["decode"].to_dict(),
                            "prefill": s["prefill"].to_dict(), "runner": c.built.runner.settings})  # fmt: skip
    cpu, threads = capabilities("cpu").name, torch.get_num_threads()
    load = f"load average {os.getloadavg()[0]:.2f} (start {load_start[0]:.2f})"
    print(f"\n{eager.built.task.name} on {cpu}, {threads} threads, {load}; fp32 validation perplexity "
          f"{base_ppl:.2f}, budget +{100 * MAX_RISE:g}%")  # fmt: skip
    head = ["contestant", "concurrency", "TPOT ms", "TPOT speed-up", "TTFT ms", "TTFT speed-up", "perplexity"]
    print(table([*head, "in budget", "tuning s"], rows))
    out = {"model": eager.built.task.name, "machine": {"cpu": cpu, "threads": threads,
           "loadavg": {"start": load_start, "end": os.getloadavg()}}, "baseline_perplexity": base_ppl,
           "recommendation": rec, "study_s": study_s, "results": results,
           "measure": OmegaConf.to_container(OmegaConf.structured(cfg.measure))}  # fmt: skip
    path = ROOT / "benchmarks" / "results" / f"peers_{eager.built.task.name}.json"
    atomic_write_text(path, json.dumps(out, indent=2, default=str))
    print(f"written: {path.relative_to(ROOT)}")
    return out


def _params(rec: dict) -> dict[str, Any]:
    """The recommendation's configuration as overrides (batch size aside: timed at each concurrency)."""
    p = rec["params"]
    knobs = {k: p[f"quant_{k}"] for k in ("accuracy_level", "symmetric") if f"quant_{k}" in p}
    return {"prune.ratio": p["prune_ratio"], "prune.depth": p["prune_depth"], "quant.bits": p["quant_bits"],
            "quant.group_size": p["quant_group_size"], "precision": p["precision"], "engine": p["engine"],
            **{f"quant.{k}": v for k, v in knobs.items()}}  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
