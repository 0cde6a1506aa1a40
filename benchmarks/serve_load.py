"""Issue-17 load benchmark: the served model under open-loop load, against its offline limit.

    python benchmarks/serve_load.py [--model-dir DIR] [--name NAME] [key=value ...] [--serve serve.key=value ...]
        [--protocol v1-json | v2-binary [--samples N]]

The model is an export (``--model-dir``, e.g. outputs/digits_cnn/model after the main job) or the
variant the overrides describe, built and exported here (model=digits_transformer engine=onnxruntime).

1. Offline: the artifact's own function on full batches of ``serve.max_batch_size`` in this process,
   with the server's intra-op threads and no server running: samples/s and the batch latency. The limit.
2. Served (``infersearch serve`` in a subprocess on loopback; one sample per JSON request on /v1/predict, or
   ``--protocol v2-binary --samples N``: N samples per Open Inference Protocol request, binary tensors):
   saturation from closed-loop clients, then Poisson arrivals at shares of it, each printing p50/p95/p99
   as the client saw them, the server's own p99 (its histogram), throughput and errors.
Targets: saturation >= 80% of offline (samples/s; 70% with 32-sample binary requests); at half saturation,
p99 <= max_delay_ms + 2 x the batch latency.
Client, server and model share this machine's cores. Writes results/serve_load_<name>.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.report.table import table
from infersearch.serve.artifact import load, sample_shape
from infersearch.serve.load import Payload, binary_v2, offer_observed, request_body, saturate
from infersearch.serve.tune import served

ROOT = Path(__file__).resolve().parents[1]
SHARES = (0.1, 0.25, 0.5, 0.75, 0.9, 1.1)
DURATION_S = 4.0


def offline(model_dir: Path, batch: int, threads: int, seconds: float = 3.0) -> dict[str, float]:
    model = load(model_dir, threads)
    x = np.random.default_rng(0).standard_normal((batch, *model.sample_shape)).astype(np.float32)
    for _ in range(20):
        model.predict(x)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {"batch": batch, "batch_ms_p50": 1000 * med, "batch_ms_p95": 1000 * float(np.quantile(times, 0.95)),
            "samples_per_s": batch / med}  # fmt: skip


def export_variant(overrides: list[str], folder: Path) -> Path:
    """The variant the overrides describe, built and exported as a study would export it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from optuna.trial import create_trial

    from infersearch.study.export import export_trial

    if not any(o.startswith("study.name=") for o in overrides):  # the default name is a hydra: key
        model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "digits_cnn")
        overrides = [*overrides, f"study.name={model}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    params = {k: OmegaConf.select(cfg, k) for k in ("engine", "quant.bits", "prune.ratio", "batch_size")}
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    trial = create_trial(values=[1.0], user_attrs={"config": config, "params": params, "env": {"engine": {}}})
    return export_trial(trial, folder)  # builds the variant from its config (cached steps reused)


def run(model_dir: Path, shape: tuple[int, ...], serve_args: list[str], max_batch: int, max_delay_ms: float,
        threads: int, payload: Payload) -> dict:  # fmt: skip
    limit = offline(model_dir, max_batch, threads)
    print(f"offline: {limit['samples_per_s']:.0f} samples/s, batch {max_batch} in {limit['batch_ms_p50']:.3f} ms")
    body = payload
    args = [f"serve.model_dir={model_dir}", "serve.warmup=20", *serve_args]
    setting = {"max_batch_size": max_batch, "max_delay_ms": max_delay_ms, "threads": threads}
    rows = []
    with served(args, setting, port=8791) as url:
        clients = max(8, 2 * max_batch // payload.samples)
        saturate(url, body, clients, 1.0)  # connections opened, caches warm: not counted
        sat = saturate(url, body, clients, DURATION_S).throughput_rps
        print(
            f"saturation (closed loop, {clients} clients): {sat:.0f} requests/s, {sat * payload.samples:.0f} samples/s"
        )
        for i, share in enumerate(SHARES):
            r, srv = offer_observed(url, body, share * sat, DURATION_S, seed=i)
            rows.append({"share": share, **r.summary(), "server_p99_ms": round(srv.quantile_ms(0.99), 3)})
    return {"offline": limit, "saturation_rps": sat, "saturation_samples_per_s": sat * payload.samples, "loads": rows}


def main(argv: list[str]) -> dict:
    load_start = os.getloadavg()
    model_dir, name, serve_args, overrides, protocol, samples = None, None, [], [], "v1-json", 1
    it = iter(argv)
    for a in it:
        if a == "--model-dir":
            model_dir = Path(next(it)).resolve()
        elif a == "--name":
            name = next(it)
        elif a == "--serve":
            serve_args.append(next(it))
        elif a == "--protocol":
            protocol = next(it)
        elif a == "--samples":
            samples = int(next(it))
        else:
            overrides.append(a)
    sv = {k.split("=")[0]: k.split("=")[1] for k in serve_args}
    max_batch, max_delay = int(sv.get("serve.max_batch_size", 32)), float(sv.get("serve.max_delay_ms", 2.0))
    threads = int(sv.get("serve.threads", 1))
    given = ("serve.max_batch_size", "serve.max_delay_ms", "serve.threads")
    serve_args = [a for a in serve_args if not a.startswith(given)]
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        if model_dir is None:
            model_dir = export_variant(overrides, Path(tmp))
        manifest = json.loads((model_dir / "manifest.json").read_text())
        name = name or manifest["config"]["study"]["name"]
        shape, served_name = sample_shape(manifest), manifest["config"]["study"]["name"]
        if protocol not in ("v1-json", "v2-binary") or (protocol == "v1-json" and samples != 1):
            sys.exit("--protocol v1-json (one sample per request) or v2-binary [--samples N]")
        payload = request_body(shape) if protocol == "v1-json" else binary_v2(served_name, shape, samples)
        result = run(model_dir, shape, serve_args, max_batch, max_delay, threads, payload)
    study_ms = (manifest.get("metrics") or {}).get("latency_ms_p50")
    limit, loads = result["offline"], result["loads"]
    half = min(loads, key=lambda r: abs(r["share"] - 0.5))
    bound = max_delay + 2 * limit["batch_ms_p50"]
    low = loads[0]
    result |= {
        "model": name,
        "format": manifest["format"],
        "params": manifest.get("params"),
        "serve": {"max_batch_size": max_batch, "max_delay_ms": max_delay, "threads": threads, "workers": 1},
        "study_latency_ms_p50": study_ms,
        "protocol": protocol,
        "samples_per_request": samples,
        "targets": {
            "saturation_over_offline": result["saturation_samples_per_s"] / limit["samples_per_s"],
            "saturation_target": 0.7 if samples > 1 else 0.8,
            "half_load_p99_ms": half["p99_ms"],
            "half_load_server_p99_ms": half["server_p99_ms"],
            "half_load_p99_bound_ms": bound,
        },
        "machine": {"cpu": capabilities("cpu").name, "cores": os.cpu_count(), "loadavg": [load_start, os.getloadavg()]},
    }
    print(f"\n{name} ({manifest['format']}), {capabilities('cpu').name}, {os.cpu_count()} cores; "
          f"serve max_batch_size={max_batch} max_delay_ms={max_delay} threads={threads}")  # fmt: skip
    headers = ["share", "offered_rps", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "server_p99_ms", "errors"]
    print(table(headers, [[r[h] for h in headers] for r in loads]))
    t = result["targets"]
    share, target = 100 * t["saturation_over_offline"], 100 * t["saturation_target"]
    print(f"saturation {result['saturation_rps']:.0f} requests/s x {samples} = {share:.1f}% of offline "
          f"{limit['samples_per_s']:.0f} samples/s (target {target:g}%); {protocol}")  # fmt: skip
    print(f"at half saturation p99 {half['p99_ms']:.2f} ms (server {half['server_p99_ms']:.2f} ms); "
          f"bound max_delay_ms + 2 x batch latency = {bound:.2f} ms")  # fmt: skip
    print(f"at low load ({low['offered_rps']:.0f}/s) served p50 {low['p50_ms']:.2f} ms; the study measured "
          f"{study_ms if study_ms is None else round(study_ms, 3)} ms per batch")  # fmt: skip
    suffix = "" if protocol == "v1-json" else f"_{protocol}_{samples}"
    out = ROOT / "benchmarks" / "results" / f"serve_load_{name}{suffix}.json"
    atomic_write_text(out, json.dumps(result, indent=2, default=str))
    print(f"written to {out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
