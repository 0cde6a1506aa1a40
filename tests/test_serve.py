"""infersearch serve, for real: uvicorn in a subprocess on loopback, a real HTTP client. Good and bad
requests (each bad one a 4xx with one line, the service going on with the same answers), Prometheus
metrics with a bucket at the SLO, SIGTERM, and an altered artifact refused before the port opens."""

from __future__ import annotations

import asyncio
import io
import json
import signal

import httpx
import numpy as np

from tests.served import free_port, start, wait_ready

BAD = [
    ("not json", "application/json", 400, "not valid JSON"),
    (json.dumps({"x": [1]}), "application/json", 422, '"inputs"'),
    (json.dumps({"inputs": [[1.0, 2.0]]}), "application/json", 422, "expected one sample 1x8x8"),
    (json.dumps({"inputs": [["a"] * 8] * 8}), "application/json", 422, "must be numbers"),
    (json.dumps({"inputs": []}), "application/json", 422, "shape"),
    (json.dumps({"inputs": [[[float("nan")] * 8] * 8]}), "application/json", 422, "NaN"),
    (json.dumps({"inputs": [[[0.0] * 8] * 8] * 400}), "application/json", 413, "serve.max_body_mb"),
    ('{"inputs": ' + "[" * 20000 + "]" * 20000 + "}", "application/json", 400, "nested too deeply"),
    (json.dumps({"inputs": [[[0.0] * 8] * 8]}), "text/plain", 415, "use application/json"),
]


async def _concurrently(port: int, x: np.ndarray) -> list[np.ndarray]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        replies = await asyncio.gather(*(client.post("/v1/predict", json={"inputs": [s.tolist()]}) for s in x))
    return [np.array(r.json()["outputs"]) for r in replies]


def _batch_count(metrics: str) -> float:
    return float(
        next(line.split()[-1] for line in metrics.splitlines() if line.startswith("infersearch_batch_size_count"))
    )


def test_serves_batches_and_refuses_bad_requests_without_stopping(exported):
    model_dir, x, expected = exported
    port = free_port()
    # a long batching delay, so that requests sent at once surely meet in one batch
    proc = start(model_dir, port, "serve.max_body_mb=0.1", "study.latency_slo_ms=50", "serve.max_delay_ms=200")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_ready(client, proc)
            assert client.get("/healthz").json() == {"status": "alive"}
            good = client.post("/v1/predict", json={"inputs": x.tolist()})
            assert good.status_code == 200, good.text
            np.testing.assert_allclose(np.array(good.json()["outputs"]), expected, rtol=1e-4, atol=1e-5)
            one = client.post("/v1/predict", json={"inputs": x[0].tolist()})  # a single sample, no batch axis
            np.testing.assert_allclose(np.array(one.json()["outputs"]), expected[:1], rtol=1e-4, atol=1e-5)
            for body, kind, status, reason in BAD:
                r = client.post("/v1/predict", content=body, headers={"content-type": kind})
                assert r.status_code == status and reason in r.json()["error"], (body[:40], r.text)
                assert "\n" not in r.json()["error"]
            again = client.post("/v1/predict", json={"inputs": x.tolist()})
            assert again.json()["outputs"] == good.json()["outputs"]
            buf = io.BytesIO()
            np.save(buf, x)
            npy = client.post("/v1/predict", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
            np.testing.assert_allclose(np.array(npy.json()["outputs"]), expected, rtol=1e-4, atol=1e-5)
            metrics = client.get("/metrics").text
            batches_before = _batch_count(metrics)
            answers = asyncio.run(_concurrently(port, x))  # 5 requests at once, one sample each
            for i, rows in enumerate(answers):
                np.testing.assert_allclose(rows, expected[i : i + 1], rtol=1e-4, atol=1e-5)  # each its own row
            assert _batch_count(client.get("/metrics").text) - batches_before < len(answers)  # some ran together
        assert 'infersearch_request_duration_seconds_bucket{le="0.05"}' in metrics  # the SLO's own bucket
        for name in ("queue_seconds_bucket", "compute_seconds_bucket", "batch_size_bucket", "in_flight_requests"):
            assert f"infersearch_{name}" in metrics
        assert 'infersearch_requests_total{code="200"} 4.0' in metrics
        assert 'infersearch_requests_total{code="422"} 5.0' in metrics
        assert 'infersearch_model_info{artifact_sha256="' in metrics and 'study="served"' in metrics
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        # uvicorn drains, shuts the app down, then re-raises the signal so a supervisor sees why it ended
        assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out[-2000:]
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_altered_artifact_is_refused_before_the_port_opens(exported, tmp_path):
    model_dir, _, _ = exported
    altered = tmp_path / "model"
    altered.mkdir()
    for f in model_dir.iterdir():
        (altered / f.name).write_bytes(f.read_bytes())
    with open(altered / "model.onnx", "ab") as f:
        f.write(b"\0")
    proc = start(altered, free_port())
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "serve.model_dir:" in out and "does not match its manifest hash" in out and "Traceback" not in out
