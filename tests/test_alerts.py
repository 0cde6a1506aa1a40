"""The alert rules against a real Prometheus: ``promtool check rules`` on what ``infersearch alerts``
writes, and a Prometheus server on loopback scraping a real service while its load breaks the SLO,
until the alerts are seen firing through Prometheus's HTTP API (every loop bounded in time)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import yaml

from tests.conftest import run_cli
from tests.prom import Prometheus, promtool
from tests.served import free_port, start, wait_ready

pytestmark = pytest.mark.slow  # the real CLI, a real server and Prometheus

SELECTOR = "+alerts.selector.job=infersearch"  # Hydra adds a key to a dict with +


def test_infersearch_alerts_writes_rules_that_promtool_accepts(exported, tmp_path):
    model_dir, _, _ = exported
    out = tmp_path / "alerts.yml"
    proc = run_cli("alerts", f"serve.model_dir={model_dir}", "study.name=served", "serve.slo_ms=25",
                   f"alerts.out={out}", SELECTOR)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "latency SLO 25 ms, serve.slo_ms" in proc.stdout and str(out) in proc.stdout
    checked = promtool("check", "rules", str(out))
    assert checked.returncode == 0 and "SUCCESS: 6 rules found" in checked.stdout, checked.stdout + checked.stderr
    rules = {r["alert"]: r for g in yaml.safe_load(out.read_text())["groups"] for r in g["rules"]}
    assert '{job="infersearch",le="0.025"}' in rules["InfersearchSLOBurnRate"]["expr"]
    assert "histogram_quantile(0.99" in rules["InfersearchLatencyP99OverSLO"]["expr"]
    assert rules["InfersearchSweepRegressed"]["expr"] == 'infersearch_sweep_last_exit_status{study="served"} == 5'
    own = run_cli("alerts", "--config-dir", "tests/conf", "model=awkward", f"serve.model_dir={model_dir}",
                  f"alerts.out={tmp_path / 'own.yml'}")  # fmt: skip
    assert own.returncode == 0 and "alert rules for study 'awkward'" in own.stdout, own.stderr[-2000:]
    bad = run_cli("alerts", f"serve.model_dir={model_dir}", "alerts.objective=1.5")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "alerts: objective" in bad.stderr


def _load(port: int, stop: threading.Event, x: list) -> None:
    """About 40 requests a second until told to stop (at most 90 s)."""
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            client.post("/v1/predict", json={"inputs": x})
            time.sleep(0.025)


def test_prometheus_sees_the_slo_alerts_fire_under_load(exported, tmp_path):
    model_dir, x, _ = exported
    port, prom_port = free_port(), free_port()
    # an SLO of 0.2 ms that a 2 ms batching delay cannot meet; short windows so the test ends in seconds
    rules = tmp_path / "alerts.yml"
    proc = run_cli("alerts", f"serve.model_dir={model_dir}", "study.name=served", "serve.slo_ms=0.2",
                   "serve.max_delay_ms=2", f"alerts.out={rules}", SELECTOR, "alerts.window=10s", "alerts.pending=0s",
                   "alerts.burn_windows=[20s,10s]")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    server = start(model_dir, port, "serve.slo_ms=0.2", "serve.max_delay_ms=2")
    stop = threading.Event()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_ready(client, server)
        load = threading.Thread(target=_load, args=(port, stop, x[:1].tolist()), daemon=True)
        load.start()
        with Prometheus(tmp_path, f"127.0.0.1:{port}", rules, prom_port) as prom:
            seen: dict[str, str] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen = prom.alerts()
                if (
                    seen.get("InfersearchLatencyP99OverSLO") == "firing"
                    and seen.get("InfersearchSLOBurnRate") == "firing"
                ):
                    break
                time.sleep(1)
            assert seen.get("InfersearchLatencyP99OverSLO") == "firing", seen
            assert seen.get("InfersearchSLOBurnRate") == "firing", seen
            assert "InfersearchErrorRatio" not in seen  # every answer was 200
            (up,) = prom.query('up{job="infersearch"}')
            assert up["value"][1] == "1"
            # the SLO's bucket exists and, the SLO broken, holds fewer than all the requests
            (within,) = prom.query('infersearch_request_duration_seconds_bucket{le="0.0002"}'
                                   " / ignoring(le) infersearch_request_duration_seconds_count")  # fmt: skip
            assert 0 <= float(within["value"][1]) < 1, within
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=40)
