"""The ASGI app: ``POST /v1/predict``, ``GET /healthz`` (alive), ``GET /readyz`` (loaded and warmed),
``GET /metrics`` (Prometheus text format). A bad request gets a 4xx with one line and the service goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infersearch.config import ServeConfig
from infersearch.serve.artifact import Artifact
from infersearch.serve.batcher import Batcher, QueueFull
from infersearch.serve.inputs import BadRequest, parse
from infersearch.serve.metrics import make_metrics

log = logging.getLogger("infersearch.serve")


def create_app(cfg: ServeConfig, model: Artifact, slo_ms: float | None) -> Starlette:
    """``model`` is loaded before the port opens: a bad artifact never serves."""
    metrics = make_metrics(slo_ms / 1000 if slo_ms else None, cfg.max_batch_size)
    state = {"ready": False}
    batcher = Batcher(model.predict, metrics, cfg.max_batch_size, cfg.max_delay_ms / 1000, cfg.workers, cfg.queue_size)
    params = model.manifest.get("params") or {}
    metrics.model.info(
        {
            "study": model.study,
            "trial": str(model.trial),
            "configuration": " ".join(f"{k}={v}" for k, v in sorted(params.items())),
            "format": model.manifest["format"],
            "artifact_sha256": model.digest,
        }
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        sample = np.zeros((cfg.max_batch_size, *model.sample_shape), np.float32)
        for _ in range(cfg.warmup):
            await asyncio.to_thread(model.predict, sample)
        batcher.start()
        state["ready"] = True
        log.info("serving study %s trial %s (%s) on http://%s:%d", model.study, model.trial, model.manifest["format"],
                 cfg.host, cfg.port)  # fmt: skip
        yield
        state["ready"] = False
        await batcher.stop()

    def answer(status: int, body: dict, started: float, headers: dict | None = None) -> JSONResponse:
        metrics.requests.labels(code=str(status)).inc()
        metrics.request.observe(time.perf_counter() - started)
        return JSONResponse(body, status_code=status, headers=headers)

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        with metrics.in_flight.track_inprogress():
            size = int(request.headers.get("content-length") or 0)
            if size > cfg.max_body_mb * 2**20:
                return answer(
                    413, {"error": f"body of {size} bytes is over serve.max_body_mb={cfg.max_body_mb}"}, started
                )
            try:
                body = await request.body()
                if len(body) > cfg.max_body_mb * 2**20:
                    raise BadRequest(413, f"body is over serve.max_body_mb={cfg.max_body_mb}")
                x = parse(body, request.headers.get("content-type", ""), model.sample_shape)
                y = await asyncio.wait_for(batcher.submit(x), cfg.timeout_ms / 1000)
            except BadRequest as exc:
                return answer(exc.status, {"error": exc.reason}, started)
            except QueueFull as exc:
                return answer(503, {"error": str(exc)}, started, {"Retry-After": "1"})
            except TimeoutError:
                return answer(504, {"error": f"no answer within serve.timeout_ms={cfg.timeout_ms}"}, started)
            except Exception as exc:  # noqa: BLE001 - the model failed on this batch: say so, keep serving
                log.error("inference failed: %s: %s", type(exc).__name__, exc)
                return answer(500, {"error": f"inference failed: {type(exc).__name__}: {exc}"}, started)
            return answer(200, {"outputs": y.tolist(), "study": model.study, "trial": model.trial}, started)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_request: Request) -> Response:
        ok = state["ready"]
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
