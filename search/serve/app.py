"""The ASGI app: ``POST /v1/predict``, ``GET /healthz`` (alive), ``GET /readyz`` (loaded and warmed),
``GET /metrics`` (Prometheus text format), and the Open Inference Protocol's routes (``/v2``, its health,
model metadata, config, stats and ``infer``: v2.py). A bad request gets a 4xx with one line and the service
goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import TypeVar

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infersearch.config import ServeConfig
from infersearch.serve import v2
from infersearch.serve.artifact import Artifact
from infersearch.serve.batcher import Batcher, QueueFull
from infersearch.serve.inputs import BadRequest, parse
from infersearch.serve.metrics import make_metrics

log = logging.getLogger("infersearch.serve")
LARGE = 256 * 1024  # bodies above this are decoded in a thread: health checks stay prompt meanwhile
Req = TypeVar("Req")  # what a protocol's decoder keeps of a request for its encoder (v2.Request; None for /v1)
Decode = Callable[[bytes], tuple[np.ndarray, Req]]  # body -> (the batch, what the encoder needs of the request)
Encode = Callable[[np.ndarray, Req], tuple[bytes, dict[str, str] | None, str]]  # -> body, headers, media type


def create_app(cfg: ServeConfig, model: Artifact, slo_ms: float | None) -> Starlette:
    """``model`` is loaded before the port opens: a bad artifact never serves."""
    metrics = make_metrics(slo_ms / 1000 if slo_ms else None, cfg.max_batch_size)
    totals = metrics.totals  # GET /v2/models/{m}/stats
    state: dict = {"ready": False, "out_shape": ()}
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
            out = await asyncio.to_thread(model.predict, sample)
        state["out_shape"] = tuple(out.shape[1:]) if cfg.warmup else tuple(model.predict(sample[:1]).shape[1:])
        batcher.start()
        state["ready"] = True
        log.info("serving study %s trial %s (%s) on http://%s:%d", model.study, model.trial, model.manifest["format"],
                 cfg.host, cfg.port)  # fmt: skip
        yield
        state["ready"] = False
        await batcher.stop()

    def answer(status: int, body: dict | bytes, started: float, headers: dict | None = None,
               media: str = "application/json") -> Response:  # fmt: skip
        metrics.requests.labels(code=str(status)).inc()
        took = time.perf_counter() - started
        metrics.request.observe(took)
        if status == 200:
            totals.success, totals.success_ns = totals.success + 1, totals.success_ns + int(took * 1e9)
        else:
            totals.fail, totals.fail_ns = totals.fail + 1, totals.fail_ns + int(took * 1e9)
        if isinstance(body, bytes):
            return Response(body, status_code=status, headers=headers, media_type=media)
        return JSONResponse(body, status_code=status, headers=headers)

    async def served(request: Request, decode: Decode[Req], encode: Encode[Req]) -> Response:
        """Read, decode (off the event loop when large), batch, encode; every failure a 4xx/5xx with one line."""
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
                t0 = time.perf_counter()
                x, parsed = await asyncio.to_thread(decode, body) if len(body) > LARGE else decode(body)
                decoding = time.perf_counter() - t0
                metrics.decode.observe(decoding)
                y = await batcher.submit(x, cfg.timeout_ms / 1000)
            except BadRequest as exc:
                return answer(exc.status, {"error": exc.reason}, started)
            except QueueFull as exc:
                return answer(503, {"error": str(exc)}, started, {"Retry-After": "1"})
            except TimeoutError:
                return answer(504, {"error": f"no answer within serve.timeout_ms={cfg.timeout_ms}"}, started)
            except Exception as exc:  # noqa: BLE001 - the model failed on this batch: say so, keep serving
                log.error("inference failed: %s: %s", type(exc).__name__, exc)
                return answer(500, {"error": f"inference failed: {type(exc).__name__}: {exc}"}, started)
            t0 = time.perf_counter()
            body, headers, media = encode(y, parsed)
            encoding = time.perf_counter() - t0
            metrics.encode.observe(encoding)
            totals.decode_ns += int(decoding * 1e9)
            totals.encode_ns += int(encoding * 1e9)
            return answer(200, body, started, headers, media)

    async def predict(request: Request) -> Response:
        kind = request.headers.get("content-type", "")
        return await served(
            request,
            lambda body: (parse(body, kind, model.sample_shape), None),
            lambda y, _req: (
                json.dumps({"outputs": y.tolist(), "study": model.study, "trial": model.trial}).encode(),
                None,
                "application/json",
            ),
        )

    name = model.study

    def known(request: Request) -> Response | None:
        asked = request.path_params["model"]
        if asked != name:
            return JSONResponse({"error": f"unknown model {asked!r}; this server serves {name!r}"}, status_code=404)
        return None

    async def infer_v2(request: Request) -> Response:
        if (missing := known(request)) is not None:
            return missing
        length = request.headers.get(v2.HEADER)

        def decode(body: bytes) -> tuple[np.ndarray, v2.Request]:
            req = v2.parse_infer(body, length, model.sample_shape)
            return req.x, req

        return await served(request, decode, lambda y, req: v2.encode_infer(y, req, name))

    async def server_v2(_request: Request) -> Response:
        return JSONResponse({"name": "infersearch", "version": version("infersearch"),
                             "extensions": ["binary_tensor_data", "statistics", "model_configuration"]})  # fmt: skip

    async def live_v2(_request: Request) -> Response:
        return Response(status_code=200)

    async def ready_v2(request: Request) -> Response:
        if "model" in request.path_params and (missing := known(request)) is not None:
            return missing
        return Response(status_code=200 if state["ready"] else 503)

    async def model_v2(request: Request) -> Response:
        if (missing := known(request)) is not None:
            return missing
        return JSONResponse(v2.metadata(name, model.manifest["format"], model.sample_shape, state["out_shape"]))

    async def config_v2(request: Request) -> Response:
        if (missing := known(request)) is not None:
            return missing
        fmt, shapes = model.manifest["format"], (model.sample_shape, state["out_shape"])
        return JSONResponse(v2.model_config(name, fmt, cfg.max_batch_size, *shapes))

    async def stats_v2(request: Request) -> Response:
        if (missing := known(request)) is not None:
            return missing
        return JSONResponse(metrics.totals.as_stats(name))

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_request: Request) -> Response:
        ok = state["ready"]
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    m = "/v2/models/{model}"
    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/v2", server_v2),
        Route("/v2/health/live", live_v2),
        Route("/v2/health/ready", ready_v2),
        Route(m, model_v2),
        Route(m + "/versions/{version}", model_v2),
        Route(m + "/ready", ready_v2),
        Route(m + "/config", config_v2),
        Route(m + "/stats", stats_v2),
        Route(m + "/infer", infer_v2, methods=["POST"]),
        Route(m + "/versions/{version}/infer", infer_v2, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
