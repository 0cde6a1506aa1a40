"""Issue-24 benchmark: do a study's figures stay true when the machine is busy?

    python benchmarks/busy_start.py [--trials 30] [--busy-s 90] [--scenarios quiet,busy-start,busy-stays] [overrides]

Runs the default study (tracking off) once per scenario, each with a cold anchor (the trained baseline is
shared): ``quiet`` (nothing else runs), ``busy-start`` (a busy-loop neighbour on every core for the study's
first ``--busy-s`` seconds, then gone: the baseline and its anchor are timed in a slow moment, later trials on
a quiet machine, as when a build finishes mid-study on a laptop) and ``busy-stays`` (the neighbour for the
whole study). After each study, on the quiet machine, the exported recommendation is timed independently with
its engine's own runtime (ONNX Runtime's session, OpenVINO's compiled model, torch) under
``torch.utils.benchmark``, at the recommended batch size and the trial's threads, and compared with the
reported ms per sample. The fp32 eager baseline is timed alternately with it: on these VMs the quiet
machine itself flips between states up to 2x apart within minutes, so the table also gives the machine's
state at that moment (baseline now / the anchor the reported figure rests on) and the independent figure
brought to the anchor's state. ``--recheck DIR`` times an earlier run's exports again. Prints one row per
scenario; writes results/busy_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils import benchmark

from infersearch.core.cache import atomic_write_text
from infersearch.report.table import table

OUT = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def neighbours() -> list[subprocess.Popen]:
    """A busy loop on every core: what a build or a second job does to a small machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def run_study(name: str, cwd: Path, cache: Path, trials: int, busy_s: float | None, extra: list[str]) -> float:
    """The default study with a neighbour for its first ``busy_s`` seconds (None: none, inf: throughout)."""
    shutil.rmtree(cache / "anchor", ignore_errors=True)  # a cold anchor: timed in whatever moment trial 0 sees
    exe = shutil.which("infersearch") or str(Path(sys.executable).with_name("infersearch"))  # the venv's, unactivated
    args = [exe, "-m", f"study.name={name}", f"study.n_trials={trials}", "tracking=disabled", *extra]
    log = (cwd / f"{name}.log").open("w")
    t0 = time.monotonic()
    study = subprocess.Popen([*args, f"cache_dir={cache}"], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    busy = neighbours() if busy_s else []
    try:
        while study.poll() is None:
            if busy and time.monotonic() - t0 > busy_s:
                stop(busy)
                busy = []
            time.sleep(0.5)
    finally:
        stop(busy)
    if study.returncode != 0:
        raise SystemExit(f"study {name} exited {study.returncode}: see {cwd / f'{name}.log'}")
    return time.monotonic() - t0


def _runner(model_dir: Path, manifest: dict, threads: int):
    """The artifact in its engine's own runtime: one call runs one batch."""
    fmt, files = manifest["format"], sorted(manifest["files"])
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(model_dir / files[0]), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})
    if fmt == "openvino-ir":
        import openvino as ov

        xml = next(f for f in files if f.endswith(".xml"))
        hint = manifest.get("env", {}).get("engine", {}).get("precision_hint", "f32") or "f32"
        config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        request = ov.Core().compile_model(str(model_dir / xml), "CPU", config).create_infer_request()
        return lambda x: request.infer({0: x})
    from infersearch.serve.artifact import load

    predict = load(model_dir, threads, manifest).predict
    return predict


def _median_ms(fn, x, threads: int) -> float:
    timer = benchmark.Timer(stmt="fn(x)", globals={"fn": fn, "x": x}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=2.0).median * 1000


def independent(model_dir: Path, stored_config: dict) -> dict:
    """The export in its engine's runtime and, alternately with it, the fp32 eager baseline rebuilt from the
    study's cache (twice each): the baseline says which state the machine is in at that moment."""
    import torch

    from infersearch.trial.evaluate import batch_of, rebuild

    manifest = json.loads((model_dir / "manifest.json").read_text())
    bs, threads = int(manifest["params"]["batch_size"]), int(manifest["env"]["threads"])
    torch.set_num_threads(threads)
    run = _runner(model_dir, manifest, threads)
    x = np.random.default_rng(0).standard_normal((bs, *manifest["input"]["shape"][1:])).astype(np.float32)
    _, built = rebuild(stored_config)
    torch.set_num_threads(threads)
    ref, xb = built.base.fresh().eval(), batch_of(built.task, bs)
    base = torch.no_grad()(lambda x: ref(x))
    for _ in range(20):
        run(x), base(xb)
    art, bas = [], []
    for _ in range(2):
        art.append(_median_ms(run, x, threads))
        bas.append(_median_ms(base, xb, threads))
    return {"ms_per_sample": min(art) / bs, "baseline_ms": min(bas), "batch_size": bs, "threads": threads}


def row(name: str, cwd: Path, wall_s: float) -> dict:
    import optuna

    out = cwd / "outputs" / name
    rec = json.loads((out / "recommendation.json").read_text())
    confirmed = rec.get("confirmed") or {}
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
    stored = study.trials[rec["number"]].user_attrs["config"]
    ind = independent(out / "model", stored)
    reported = rec["values"]["latency_ms_per_sample"]
    anchor = rec["metrics"].get("anchor_ms")
    # the machine's state at the independent timing, against the anchor the reported figure rests on
    state = ind["baseline_ms"] / anchor if anchor else 1.0
    import optuna

    trials = study.get_trials()
    metrics = [t.user_attrs.get("metrics", {}) for t in trials if t.user_attrs.get("metrics")]
    settled = [m for m in metrics if "anchor_ms" in m and m.get("anchor_settled", 1.0)]
    anchors = sorted({(m["anchor_ms"], round(m.get("anchor_spread", 0), 4)) for m in settled})
    return {
        "scenario": name,
        "wall_s": wall_s,
        "trial": rec["number"],
        "params": rec["params"],
        "batch_size": ind["batch_size"],
        "threads": ind["threads"],
        "reported_ms_per_sample": reported,
        "first_ms_per_sample": rec["first_values"]["latency_ms_per_sample"],
        "independent_ms_per_sample": ind["ms_per_sample"],
        "reported_over_independent": reported / ind["ms_per_sample"],
        "independent_baseline_ms": ind["baseline_ms"],
        "anchor_ms": anchor,
        "state_at_independent": state,
        "reported_over_independent_at_anchor_state": reported * state / ind["ms_per_sample"],
        "confirmed": bool(confirmed),
        "disturbed": rec.get("disturbed"),
        "disturbed_trials": sum(bool(m.get("machine_disturbed")) for m in metrics),
        "measured_trials": len(metrics),
        "anchors_ms_and_spread": anchors,  # the settled ones the trials used
        "unsettled_anchor_trials": sum(1 for m in metrics if "anchor_ms" in m and not m.get("anchor_settled", 1.0)),
        "retaken": sum(1 for t in trials if (t.user_attrs.get("env") or {}).get("anchor_replaced_ms")),
    }


def print_table(rows: list[dict], cpu: str, trials: int, busy_s: float) -> None:
    print(f"\n{cpu}; default study, {trials} trials, neighbour = a busy loop per core ({busy_s:.0f} s at the start)")
    headers = ["scenario", "recommended", "reported ms/sample", "independent", "reported / independent",
               "machine state then", "at the anchor's state", "timed", "disturbed trials",
               "settled anchors (ms, spread)", "study s"]  # fmt: skip
    body = []
    for r in rows:
        p = r["params"]
        body.append([
            r["scenario"], f"{r['trial']} {p['engine']} int{p['quant_bits']} p{p['prune_ratio']} b{r['batch_size']}",
            f"{r['reported_ms_per_sample']:.4g}", f"{r['independent_ms_per_sample']:.4g}",
            f"{r['reported_over_independent']:.2f}x", f"{r['state_at_independent']:.2f}",
            f"{r['reported_over_independent_at_anchor_state']:.2f}x",
            "DISTURBED" if r["disturbed"] else "confirmed" if r["confirmed"] else "first",
            f"{r['disturbed_trials']}/{r['measured_trials']}",
            ", ".join(f"{ms:.3g} ({sp:.3f})" for ms, sp in r["anchors_ms_and_spread"]), f"{r['wall_s']:.0f}",
        ])  # fmt: skip
    print(table(headers, body))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--busy-s", type=float, default=90.0)
    ap.add_argument("--scenarios", default="quiet,busy-start,busy-stays")
    ap.add_argument("--recheck", type=Path, help="time the exports of an earlier run's folder again (no studies)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    work = a.recheck or Path(tempfile.mkdtemp(prefix="busy-start-"))
    cache = work / "cache"
    when = {"quiet": None, "busy-start": a.busy_s, "busy-stays": float("inf")}
    walls = {}
    if a.recheck and (OUT / "busy_start.json").exists():
        walls = {r["scenario"]: r["wall_s"] for r in json.loads((OUT / "busy_start.json").read_text())["rows"]}
    rows = []
    for name in a.scenarios.split(","):
        wall = walls.get(name, 0.0) if a.recheck else run_study(name, work, cache, a.trials, when[name], a.overrides)
        rows.append(row(name, work, wall))
        r = rows[-1]
        print(f"{name}: reported {r['reported_ms_per_sample']:.4g} ms/sample, independent "
              f"{r['independent_ms_per_sample']:.4g} ({r['reported_over_independent']:.2f}x; at the anchor's "
              f"state {r['reported_over_independent_at_anchor_state']:.2f}x)", flush=True)  # fmt: skip
    cpu = f"{cpu_name()}, {os.cpu_count()} cores"
    print_table(rows, cpu, a.trials, a.busy_s)
    OUT.mkdir(exist_ok=True)
    doc = {"cpu": cpu, "trials": a.trials, "busy_s": a.busy_s, "overrides": a.overrides, "rows": rows}
    atomic_write_text(OUT / "busy_start.json", json.dumps(doc, indent=2, default=str))
    print(f"wrote {OUT / 'busy_start.json'}; studies under {work}")


if __name__ == "__main__":
    main()
