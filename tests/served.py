"""A real ``infersearch serve`` in a subprocess on loopback, for the serving and alerting tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    args = [f"serve.model_dir={model_dir}", f"serve.port={port}", "serve.warmup=2", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "infersearch", "serve", *args], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_ready(client: httpx.Client, proc: subprocess.Popen, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server was not ready within the limit")
