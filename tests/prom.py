"""Debian's Prometheus for the tests: ``promtool`` on the rules, a server on loopback. CI installs it
(.ci/run) and sets INFERSEARCH_REQUIRE_PROMETHEUS, so there a missing binary fails instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("INFERSEARCH_REQUIRE_PROMETHEUS"):
            raise AssertionError(f"{name} is not installed (apt-get install prometheus)")
        pytest.skip(f"needs {name} (Debian's prometheus package)")
    return path


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=60)


def rules_test(rules: Path, prom_text: str, alert: str, expected: list[dict]) -> subprocess.CompletedProcess:
    """``promtool test rules``: the series of a textfile-collector file, held for 3 minutes, and what
    ``alert`` should be at minute 2 (``expected``: its labels and annotations; [] = not firing)."""
    series = [
        {"series": _series(s.name, s.labels), "values": f"{s.value}x3"}
        for family in text_string_to_metric_families(prom_text)
        for s in family.samples
    ]
    doc = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{"eval_time": "2m", "alertname": alert, "exp_alerts": expected}],
            }
        ],
    }
    path = rules.parent / f"test-{alert}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return promtool("test", "rules", str(path))


def _series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


class Prometheus:
    """A Prometheus server on loopback scraping ``target`` every second, with ``rules``; stopped on exit."""

    def __init__(self, folder: Path, target: str, rules: Path, port: int) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "infersearch", "static_configs": [{"targets": [target]}]}],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(folder / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [binary("prometheus"), f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def __enter__(self) -> Prometheus:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited: see prometheus.log"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError("prometheus was not ready within 30 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def alerts(self) -> dict[str, str]:
        """Alert name -> state (pending, firing), as Prometheus's HTTP API reports them."""
        data = httpx.get(f"{self.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return {a["labels"]["alertname"]: a["state"] for a in data}

    def query(self, expr: str) -> list[dict]:
        return httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
