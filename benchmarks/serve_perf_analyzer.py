"""Issue-28 benchmark: the service driven by NVIDIA's perf_analyzer (a C++ load tool, so the client is not
the limit as serve_load.py's httpx is), beside the artifact's offline limit, in one run.

    bash benchmarks/perf_analyzer_setup.sh    # once: perf_analyzer and its libraries (no GPU needed)
    python benchmarks/serve_perf_analyzer.py [--model-dir DIR] [--name NAME] [key=value ...]
        [--serve serve.key=value ...] [--perf-analyzer PATH] [--quick]

1. Offline: the artifact at batch ``serve.max_batch_size`` (32) in this process, no server: samples/s.
2. ``infersearch serve`` in a subprocess on loopback, then perf_analyzer over the Open Inference Protocol:
   32-sample binary requests at closed-loop concurrency steps; 1-sample requests, binary and JSON, likewise;
   Poisson request rates (1-sample binary) at shares of that saturation.
Each run's own report (perf_analyzer ``-f``) is kept: results/serve_perf_analyzer_<name>_<run>.csv. Around each
run the server's CPU time (its process tree, /proc) and its request count (``/v2/.../stats``) are read: the
server's CPU per request; perf_analyzer's own CPU likewise. Targets: 32-sample served samples/s >= 70% of offline;
1-sample requests/s >= 1160 (2x the 580 of the httpx/JSON benchmark). Writes results/serve_perf_analyzer_<name>.json.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from serve_load import export_variant, offline

from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.report.table import table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PORT = 8793
DEFAULT_PA = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "infersearch/perf-tools/perf_analyzer"
TARGET_SHARE, TARGET_RPS = 0.70, 1160.0
POISSON_SHARES = (0.3, 0.5, 0.7)  # evenly spaced: one --request-rate-range


@dataclass
class Server:
    url: str
    pid: int
    model: str


@contextlib.contextmanager
def serving(model_dir: Path, serve_args: list[str]) -> Iterator[Server]:
    """A real ``infersearch serve`` on loopback until the block ends (SIGTERM); its log goes to a file."""
    model = json.loads((model_dir / "manifest.json").read_text())["config"]["study"]["name"]
    args = [f"serve.model_dir={model_dir}", f"serve.port={PORT}", "serve.host=127.0.0.1", "serve.warmup=20"]
    url = f"http://127.0.0.1:{PORT}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "infersearch", "serve", *args, *serve_args], stdout=log,
                                stderr=log, text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not _ready(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    sys.exit(f"the server did not start: {log.read()[-600:]}")
                time.sleep(0.3)
            yield Server(url, proc.pid, model)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live children (uvicorn's worker processes), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def requests_served(server: Server) -> int:
    stats = httpx.get(f"{server.url}/v2/models/{server.model}/stats", timeout=5).json()["model_stats"][0]
    return stats["inference_stats"]["success"]["count"]


def perf_analyzer(pa: Path, server: Server, run: str, name: str, args: list[str]) -> dict:
    """One perf_analyzer invocation: its CSV rows, and the server's and its own CPU per request."""
    out = RESULTS / f"serve_perf_analyzer_{name}_{run}.csv"
    cmd = [str(pa), "-m", server.model, "-u", server.url.removeprefix("http://"), "-i", "http",
           "--measurement-interval", "2000", "--stability-percentage", "20", "--max-trials", "10", "-f", str(out),
           *args]  # fmt: skip
    served0, cpu0 = requests_served(server), cpu_seconds(server.pid)
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    served1, cpu1 = requests_served(server), cpu_seconds(server.pid)
    n = max(1, served1 - served0)
    client_cpu = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    rows = [_row(r) for r in csv.DictReader(out.open())] if done.returncode == 0 else []
    if done.returncode != 0:  # e.g. no stable measurement on a busy machine: said, and the other runs go on
        print(f"perf_analyzer {run} failed ({done.returncode}): {(done.stdout + done.stderr)[-800:]}", file=sys.stderr)
    return {
        "error": None if done.returncode == 0 else (done.stdout + done.stderr)[-800:],
        "run": run, "command": " ".join(["perf_analyzer", *cmd[1:]]).replace(str(RESULTS) + "/", ""),
        "csv": out.name, "rows": rows, "requests": n, "wall_s": round(wall, 1),
        "server_cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / n, 4),
        "server_cpu_share": round((cpu1 - cpu0) / wall, 3),
        "client_cpu_ms_per_request": round(1000 * client_cpu / n, 4),
    }  # fmt: skip


def _row(r: dict[str, str]) -> dict[str, float]:
    """perf_analyzer's CSV row: the load, samples/s and latencies in ms."""
    us = {k: float(v) / 1000 for k, v in r.items() if k.endswith("latency") or k.startswith(("Server", "Client"))}
    load = {"concurrency": float(r["Concurrency"])} if "Concurrency" in r else {"rate": float(r["Request Rate"])}
    return {**load, "samples_per_s": float(r["Inferences/Second"]), **{k: round(v, 3) for k, v in us.items()}}


def runs(quick: bool) -> list[tuple[str, list[str]]]:
    steps = "2:8:2" if not quick else "4:4:1"
    one = "8:32:8" if not quick else "16:16:1"
    return [
        ("b32_binary", ["-b", "32", "--concurrency-range", steps]),
        ("b1_binary", ["-b", "1", "--concurrency-range", one]),
        ("b1_json", ["-b", "1", "--concurrency-range", one, "--input-tensor-format", "json",
                     "--output-tensor-format", "json"]),
    ]  # fmt: skip


def poisson(saturation_rps: float, quick: bool) -> list[str]:
    shares = POISSON_SHARES[-1:] if quick else POISSON_SHARES
    rates = [round(s * saturation_rps) for s in shares]
    step = rates[1] - rates[0] if len(rates) > 1 else 1
    # 64 threads: a synchronous thread waits for its answer, and 16 of them capped the offered rate near 4,000/s
    return ["-b", "1", "--request-distribution", "poisson", "--max-threads", "64",
            "--request-rate-range", f"{rates[0]}:{rates[-1]}:{step}"]  # fmt: skip


def best(result: dict) -> dict:
    return max(result["rows"], key=lambda r: r["samples_per_s"], default={"samples_per_s": float("nan")})


def measure(model_dir: Path, name: str, serve_args: list[str], pa: Path, quick: bool) -> dict:
    sv = dict(a.split("=", 1) for a in serve_args)
    max_batch, threads = int(sv.get("serve.max_batch_size", 32)), int(sv.get("serve.threads", 1))
    if "serve.threads" not in sv:
        serve_args = [*serve_args, f"serve.threads={threads}"]  # the offline figure's threads, served alike
    limit = offline(model_dir, max_batch, threads)
    print(f"offline: {limit['samples_per_s']:.0f} samples/s at batch {max_batch} ({limit['batch_ms_p50']:.3f} ms)")
    results = {}
    with serving(model_dir, serve_args) as server:
        for run, args in runs(quick):
            results[run] = perf_analyzer(pa, server, run, name, args)
            top = best(results[run])
            print(f"{run}: best {top['samples_per_s']:.0f} samples/s; server CPU "
                  f"{results[run]['server_cpu_ms_per_request']:.3f} ms/request")  # fmt: skip
        sat = best(results["b1_binary"])["samples_per_s"]
        if sat != sat:  # NaN: that run failed; the Poisson rates then come from the JSON one
            sat = best(results["b1_json"])["samples_per_s"]
        results["poisson_b1_binary"] = perf_analyzer(pa, server, "poisson_b1_binary", name, poisson(sat, quick))
    return {"offline": limit, "serve_args": serve_args, "runs": results}


def summary(result: dict) -> dict:
    runs_, limit = result["runs"], result["offline"]
    b32, b1, js = (best(runs_[k]) for k in ("b32_binary", "b1_binary", "b1_json"))
    share = b32["samples_per_s"] / limit["samples_per_s"]
    return {
        "b32_served_samples_per_s": b32["samples_per_s"],
        "b32_share_of_offline": round(share, 4),
        "b32_target_share": TARGET_SHARE,
        "b1_binary_requests_per_s": b1["samples_per_s"],
        "b1_json_requests_per_s": js["samples_per_s"],
        "b1_target_requests_per_s": TARGET_RPS,
        "met": {"b32_share": share >= TARGET_SHARE, "b1_binary": b1["samples_per_s"] >= TARGET_RPS,
                "b1_json": js["samples_per_s"] >= TARGET_RPS},
    }  # fmt: skip


def report(result: dict) -> None:
    heads = ["run", "load", "samples_per_s", "p50_ms", "p99_ms", "server_queue_ms", "server_compute_ms"]
    rows = []
    for run, r in result["runs"].items():
        for row in r["rows"]:
            load = f"c={row['concurrency']:g}" if "concurrency" in row else f"{row['rate']:g}/s"
            rows.append([run, load, round(row["samples_per_s"]), row.get("p50 latency"), row.get("p99 latency"),
                         row.get("Server Queue"), row.get("Server Compute Infer")])  # fmt: skip
    print(table(heads, rows))
    print(table(["run", "requests", "server_cpu_ms_per_request", "server_cpu_share", "client_cpu_ms_per_request"],
                [[k, r["requests"], r["server_cpu_ms_per_request"], r["server_cpu_share"],
                  r["client_cpu_ms_per_request"]] for k, r in result["runs"].items()]))  # fmt: skip
    s = result["summary"]
    print(f"32-sample binary: {s['b32_served_samples_per_s']:.0f} samples/s = {100 * s['b32_share_of_offline']:.1f}% "
          f"of offline {result['offline']['samples_per_s']:.0f} (target {100 * TARGET_SHARE:g}%)")  # fmt: skip
    print(f"1-sample: {s['b1_binary_requests_per_s']:.0f} requests/s binary, {s['b1_json_requests_per_s']:.0f} JSON "
          f"(target {TARGET_RPS:g})")  # fmt: skip


def main(argv: list[str]) -> dict:
    load_start = os.getloadavg()
    model_dir, name, serve_args, overrides, quick = None, None, [], [], False
    pa = Path(os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer") or DEFAULT_PA)
    it = iter(argv)
    for a in it:
        if a == "--model-dir":
            model_dir = Path(next(it)).resolve()
        elif a == "--name":
            name = next(it)
        elif a == "--serve":
            serve_args.append(next(it))
        elif a == "--perf-analyzer":
            pa = Path(next(it))
        elif a == "--quick":
            quick = True
        else:
            overrides.append(a)
    if not pa.is_file():
        sys.exit(f"perf_analyzer not found at {pa}: run benchmarks/perf_analyzer_setup.sh or pass --perf-analyzer")
    with tempfile.TemporaryDirectory(prefix="serve-pa-") as tmp:
        if model_dir is None:
            model_dir = export_variant(overrides, Path(tmp))
        manifest = json.loads((model_dir / "manifest.json").read_text())
        name = name or manifest["config"]["study"]["name"]
        result = measure(model_dir, name, serve_args, pa, quick)
    result |= {
        "model": manifest["config"]["study"]["name"],
        "format": manifest["format"],
        "params": manifest.get("params"),
        "perf_analyzer": subprocess.run([str(pa), "--version"], capture_output=True, text=True).stdout.strip(),
        "machine": {
            "cpu": capabilities("cpu").name,
            "cores": os.cpu_count(),
            "loadavg": [load_start, os.getloadavg()],
            "note": "server, perf_analyzer and the model share these cores",
        },  # fmt: skip
    }
    result["summary"] = summary(result)
    print(
        f"\n{name} ({manifest['format']}), {capabilities('cpu').name}, {os.cpu_count()} cores; {' '.join(serve_args)}"
    )
    report(result)
    out = RESULTS / f"serve_perf_analyzer_{name}.json"
    atomic_write_text(out, json.dumps(result, indent=2, default=str))
    print(f"written to {out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
