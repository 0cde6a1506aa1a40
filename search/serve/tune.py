"""``infersearch serve-tune``: the serving settings (``max_batch_size``, ``max_delay_ms``, ``workers``,
intra-op ``threads``) measured under load on loopback, each candidate served by a real server in its
own process. Each candidate is driven closed loop (its saturation throughput) and open loop at shares of
the target rate (its latency against load), and its goodput is searched: the highest Poisson request rate
at which 99% of requests still meet the SLO (bisection up to its saturation); the pick is the highest
goodput. A grid larger than ``tune.n_trials`` is searched by Optuna; every measurement goes into the tune's own
study (search/serve/tune_study.py), so an interrupted tune resumes. The CPU and resident memory of each
setting's server are recorded beside its latency. The result goes beside the export (serving.json, which
``infersearch serve`` then uses), into the study (user attribute ``serving``), as a top-N table and a figure of
p99 against offered load in the tune's folder (search/serve/tune_report.py), and to W&B."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from infersearch.config import Config, TuneConfig
from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.core.errors import ConfigError
from infersearch.serve.artifact import digest, sample_shape
from infersearch.serve.load import LoadResult, Payload, ServerSide, offer_observed, request_body, saturate
from infersearch.serve.metrics import slo_bucket
from infersearch.serve.settings import TUNED, tuned_path
from infersearch.serve.tune_report import console, top_rows, write
from infersearch.serve.tune_study import describe, study_name, tune_search
from infersearch.serve.tune_usage import Usage

log = logging.getLogger("infersearch.serve")
READY_LIMIT_S = 120.0
TIE = 0.05  # saturations this close to the best are equal: the lower p99 decides


def holds(t: LoadResult, srv: ServerSide, slo_ms: float) -> bool:
    """At an offered rate: no errors, the rate kept up, and 99% answered within the SLO as the service's
    histogram (what the alerts read) counts them, at its bucket exactly at the SLO."""
    return t.kept_up and srv.within(slo_bucket(slo_ms / 1e3)) >= 0.99


@dataclass
class Measured:
    setting: dict[str, Any]
    target_rps: float
    saturation: LoadResult
    curve: list[LoadResult]  # open loop at each share of the target rate, in tune.loads order
    server: list[ServerSide]  # the service's own histogram over each of those loads
    goodput_rps: float = 0.0  # the highest Poisson rate found that still meets the SLO (0: none did)
    probes: list[dict[str, Any]] = field(default_factory=list)  # the goodput search's rates and verdicts
    usage: dict[str, float] = field(default_factory=dict)  # the server's CPU and memory (tune_usage.Usage)

    def _target(self, loads: list[float]) -> int:
        return min(range(len(loads)), key=lambda i: abs(loads[i] - 1.0))

    def meets(self, loads: list[float], slo_ms: float) -> bool:
        """The SLO holds at the target rate."""
        i = self._target(loads)
        return holds(self.curve[i], self.server[i], slo_ms)

    def row(self, loads: list[float], slo_ms: float) -> dict[str, Any]:
        i = self._target(loads)
        t, srv = self.curve[i], self.server[i]
        return {
            **self.setting,
            "saturation_rps": round(self.saturation.throughput_rps, 1),
            "goodput_rps": round(self.goodput_rps, 1),
            "target_rps": round(self.target_rps, 1),
            "server_p50_ms": round(srv.quantile_ms(0.5), 3),
            "server_p99_ms": round(srv.quantile_ms(0.99), 3),
            "within_slo": round(srv.within(slo_bucket(slo_ms / 1e3)), 4),
            "client_p50_ms": round(t.quantile_ms(0.5), 3),
            "client_p99_ms": round(t.quantile_ms(0.99), 3),
            "errors": t.errors,
            "meets_slo": self.meets(loads, slo_ms),
            **self.usage,
        }

    def curve_doc(self) -> dict[str, Any]:
        """Every load offered to this setting, for the figure and serving.json."""
        pairs = zip(self.curve, self.server)
        loads = [{**c.summary(), "server_p99_ms": round(v.quantile_ms(0.99), 3)} for c, v in pairs]
        return {"setting": self.setting, "loads": loads, "goodput_probes": self.probes}


def settings_grid(tu: TuneConfig) -> list[dict[str, Any]]:
    values = (tu.max_batch_size, tu.max_delay_ms, tu.workers, tu.threads)
    return [dict(zip(TUNED, combo)) for combo in itertools.product(*values)]


@contextlib.contextmanager
def served(overrides: list[str], setting: dict[str, Any], port: int) -> Iterator[str]:
    """:func:`serving`, its URL only (what benchmarks/serve_load.py uses)."""
    with serving(overrides, setting, port) as (url, _):
        yield url


@contextlib.contextmanager
def serving(overrides: list[str], setting: dict[str, Any], port: int) -> Iterator[tuple[str, int]]:
    """A real ``infersearch serve`` with this setting on loopback, until the block ends (SIGTERM): its URL and
    process id. Its output goes to a file, never a pipe nobody reads (a full pipe would stall the server)."""
    _refuse_taken(port)
    args = [*overrides, *(f"serve.{k}={v}" for k, v in setting.items()), f"serve.port={port}", "serve.host=127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infersearch", "serve", *args], stdout=out, stderr=out, text=True
        )
        try:
            deadline = time.monotonic() + READY_LIMIT_S
            while not _ready(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    out.seek(0)
                    said = out.read().strip()[-400:] or "not ready in time"
                    raise ConfigError("serve-tune", f"the server for {setting} did not start: {said}")
                time.sleep(0.2)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def _refuse_taken(port: int) -> None:
    """Something already answering on the port (another tune's server, left by a killed process) would be
    measured in place of this setting: refuse."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise ConfigError("tune.port", f"{port} is already in use on 127.0.0.1: give a free one")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the tune) unwinds like Ctrl-C: the server is stopped and the setting
    being measured is recorded as interrupted, so the next run resumes cleanly."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def goodput(url: str, body: Payload, ceiling: float, slo_ms: float, tu: TuneConfig) -> tuple[float, list[dict]]:
    """The highest Poisson request rate at which the SLO still holds (as Model Analyzer and GuideLLM's
    goodput mode search it): bisection between 0 and the closed-loop saturation, ``tune.goodput_steps`` loads
    of ``tune.duration_s``; the answer is the highest rate that held (0 when none did)."""
    lo, hi, best, probes = 0.0, ceiling, 0.0, []
    rate = ceiling  # the saturation itself first: a service that holds there is done
    for i in range(tu.goodput_steps):
        t, srv = offer_observed(url, body, rate, tu.duration_s, seed=100 + i)
        ok = holds(t, srv, slo_ms)
        probes.append({"offered_rps": round(rate, 1), "server_p99_ms": round(srv.quantile_ms(0.99), 3),
                       "within_slo": round(srv.within(slo_bucket(slo_ms / 1e3)), 4), "holds": ok})  # fmt: skip
        if ok:
            best, lo = max(best, rate), rate
            if rate >= ceiling:
                break
        else:
            hi = rate
        rate = (lo + hi) / 2
    return best, probes


def measure(
    url: str, body: Payload, setting: dict[str, Any], rate: float | None, tu: TuneConfig, slo_ms: float, pid: int
) -> Measured:
    clients = max(8, 2 * int(setting["max_batch_size"]))
    usage = Usage(pid)
    saturate(url, body, clients, min(1.0, tu.duration_s / 2))  # connections opened, caches warm: not counted
    sat = usage.over(saturate, url, body, clients, tu.duration_s)
    target = rate or 0.5 * sat.throughput_rps  # no rate given: half of what the first candidate sustains
    observed = [offer_observed(url, body, share * target, tu.duration_s, seed=i) for i, share in enumerate(tu.loads)]
    best, probes = goodput(url, body, sat.throughput_rps, slo_ms, tu)
    usage.sample_rss()
    curve, server = [c for c, _ in observed], [v for _, v in observed]
    return Measured(setting, target, sat, curve, server, best, probes, usage.summary())


def tune(cfg: Config, overrides: list[str]) -> dict[str, Any]:
    from infersearch.serve.service import service

    s = service(cfg, overrides, tuned=False)  # what an earlier serve-tune picked does not bias this one
    tu = cfg.tune
    body = request_body(sample_shape(s.manifest))
    fixed = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").startswith(("serve.", "tune."))]
    fixed += [f"serve.model_dir={s.model_dir.resolve()}", f"serve.slo_ms={s.slo_ms}"]  # the SLO's bucket
    grid, folder = settings_grid(tu), tune_dir(cfg, s.model_dir)
    machine = {"cpu": capabilities("cpu").name, "cores": os.cpu_count()}
    name = study_name(tu, {"artifact": digest(s.manifest), "slo_ms": s.slo_ms, "machine": machine})
    with tune_search(folder, name, grid, tu, cfg.study) as search, _sigterm_interrupts():
        rate = search.target_rps or tu.rate
        target = f"{rate:g} requests/s" if rate else "half the first setting's saturation"
        log.info(
            "serve-tune of %s (trial %s), SLO %g ms (%s), target %s, %gs per load: %s",
            *(s.model_dir, s.manifest.get("trial"), s.slo_ms, s.slo_source, target, tu.duration_s, describe(search)),
        )
        try:
            rate = _measure_settings(search, fixed, body, rate, tu, s.slo_ms)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what was measured stays, the same command continues
            log.warning("serve-tune interrupted: %d setting(s) measured in %s; run the same command again to "
                        "continue", len(search.measured()), search.path)  # fmt: skip
            raise SystemExit(130) from None
        rows, curves = search.results()
        return _conclude(cfg, s, rows, curves, rate, folder, search.path)


def _measure_settings(search, fixed: list[str], body: Payload, rate: float | None, tu: TuneConfig, slo_ms: float):
    """Serve and measure each setting the search asks for; the target rate (the first setting's, unless given)."""
    while (asked := search.ask()) is not None:
        trial, setting = asked
        try:
            with serving(fixed, setting, tu.port) as (url, pid):
                m = measure(url, body, setting, rate, tu, slo_ms, pid)
            rate, row = m.target_rps, m.row(tu.loads, slo_ms)
            search.tell(trial, m.goodput_rps, row, m.curve_doc(), rate)
        except BaseException:  # interrupted, or a server that did not start: this setting is measured next time
            search.fail(trial)
            raise
        log.info("serve-tune trial %d: %s", trial.number, _line(row))
    return rate


def tune_dir(cfg: Config, model_dir) -> Path:
    """``tune.dir``, else serve-tune/ beside the export (where serving.json goes)."""
    return Path(cfg.tune.dir) if cfg.tune.dir else model_dir.parent / "serve-tune"


def _line(r: dict[str, Any]) -> str:
    setting = " ".join(f"{k}={r[k]}" for k in TUNED)
    verdict = "meets the SLO" if r["meets_slo"] else "misses the SLO"
    return (
        f"{setting}: saturation {r['saturation_rps']:.0f} req/s; at {r['target_rps']:.0f} req/s server p99 "
        f"{r['server_p99_ms']:.2f} ms, {100 * r['within_slo']:.1f}% within the SLO, client p50/p99 "
        f"{r['client_p50_ms']:.2f}/{r['client_p99_ms']:.2f} ms, {r['errors']} errors: {verdict}"
    )


def pick(rows: list[dict[str, Any]]) -> int | None:
    """The row to serve with: the highest goodput (the load it carries within the SLO), where goodputs
    within ``TIE`` of the best count as equal (short loads each: closer is noise) and the lowest server p99
    at the target rate decides; None when no setting held the SLO at any rate."""
    ok = [i for i, r in enumerate(rows) if r["goodput_rps"] > 0]
    if not ok:
        return None
    top = max(rows[i]["goodput_rps"] for i in ok)
    near = [i for i in ok if rows[i]["goodput_rps"] >= (1 - TIE) * top]
    return min(near, key=lambda i: rows[i]["server_p99_ms"])


def _document(s, rows: list[dict], curves: list[dict], rate: float, top: int, db: Path) -> dict[str, Any]:
    """What serve-tune found, as serving.json holds it: the pick (None when no setting met the SLO), every
    setting's row and loads, the top-N rows and where the tune's study is."""
    chosen = pick(rows)
    return {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
        "artifact_sha256": digest(s.manifest),
        "trial": s.manifest.get("trial"),
        "slo_ms": s.slo_ms,
        "target_rps": rate,
        "machine": {"cpu": capabilities("cpu").name, "cores": os.cpu_count()},
        "pick": None if chosen is None else curves[chosen]["setting"],
        "results": rows,
        "curves": curves,
        "top": top_rows(rows, top, chosen),
        "tune_study": str(db),
    }


def _conclude(cfg: Config, s, rows: list[dict], curves: list[dict], rate: float, folder: Path, db: Path) -> dict:
    """The pick into serving.json and the study; the top-N table and the figure into the folder and W&B."""
    if not rows:
        raise ConfigError("serve-tune", "no setting was measured: see the log, or start over with tune.resume=false")
    doc = _document(s, rows, curves, rate, cfg.tune.top, db)
    of = f"trial {doc['trial']}" if doc["trial"] is not None else str(s.model_dir)
    title = f"serve-tune of {of} on {doc['machine']['cpu']} ({doc['machine']['cores']} cores)"
    doc["files"] = {k: str(v) for k, v in write(folder, doc, cfg.tune.top, title).items()}
    print(console(doc["top"]))
    print(f"top {len(doc['top'])} of {len(rows)} settings: {doc['files']['top']}; "
          f"p99 against offered load: {doc['files']['figure']}")  # fmt: skip
    from infersearch.report.tracking import Tracker

    if doc["pick"] is None:
        Tracker(cfg.tracking, cfg.study).log_serving(doc)
        print(
            f"no setting met the SLO of {s.slo_ms:g} ms ({s.slo_source}) at any rate tried: nothing stored, "
            "serve keeps its configured settings; give the latency your users need (serve.slo_ms)"
        )
        return doc
    path = tuned_path(s.model_dir)
    atomic_write_text(path, json.dumps(doc, indent=2))
    _store_in_study(cfg, doc)
    Tracker(cfg.tracking, cfg.study).log_serving(doc)
    chosen = next(r for r in rows if {k: r[k] for k in TUNED} == doc["pick"])
    chosen_args = " ".join(f"serve.{k}={v}" for k, v in doc["pick"].items())
    print(f"picked {chosen_args} (highest goodput, within {100 * TIE:g}%, then lowest p99: 99% within "
          f"{s.slo_ms:g} ms up to {chosen['goodput_rps']:.0f} requests/s, Poisson arrivals)")  # fmt: skip
    print(f"written to {path}; infersearch serve uses it for this artifact unless told otherwise")
    return doc


def _store_in_study(cfg: Config, doc: dict[str, Any]) -> None:
    import optuna

    from infersearch.study.storage import storage_url

    try:
        study = optuna.load_study(study_name=cfg.study.name, storage=storage_url(cfg.study))
    except KeyError:
        log.info("no study %r in %s: the result is kept in serving.json only", cfg.study.name, cfg.study.storage)
        return
    study.set_user_attr("serving", doc)
