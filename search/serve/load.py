"""Load on a running service, for serve-tune and the load benchmark: open loop (Poisson arrivals at an
offered rate, each request timed from when it was due, so a slow server cannot slow the clock) or
closed loop (a fixed number of clients back to back: the saturation throughput). Bounded in requests
and in time; it stops by itself."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

MAX_OUTSTANDING = 2048  # requests in flight at most; beyond, an arrival counts as dropped by the client
CONNECTIONS = 64  # open-loop connections, one client each: httpcore's shared pool costs O(connections) per request


@dataclass
class LoadResult:
    offered_rps: float | None  # None: closed loop
    elapsed_s: float  # from the first arrival until the last answer
    duration_s: float = 0.0  # how long arrivals were offered
    latencies_ms: list[float] = field(default_factory=list)  # answered 200, from when each was due
    codes: Counter = field(default_factory=Counter)  # status code, or timeout, dropped, transport, unanswered

    @property
    def ok(self) -> int:
        return self.codes[200]

    @property
    def errors(self) -> int:
        return sum(self.codes.values()) - self.ok

    @property
    def kept_up(self) -> bool:
        """Every request that arrived was answered, and answered about as fast as it arrived: the rate
        actually offered (a Poisson count, not the nominal rate) over the arrival window."""
        sent = sum(self.codes.values())
        return self.errors == 0 and self.throughput_rps >= 0.95 * sent / max(self.duration_s, 1e-9)

    @property
    def throughput_rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def quantile_ms(self, q: float) -> float:
        return float(np.quantile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, float | int | None]:
        return {
            "offered_rps": self.offered_rps,
            "throughput_rps": round(self.throughput_rps, 1),
            "p50_ms": round(self.quantile_ms(0.5), 3),
            "p95_ms": round(self.quantile_ms(0.95), 3),
            "p99_ms": round(self.quantile_ms(0.99), 3),
            "requests": sum(self.codes.values()),
            "errors": self.errors,
        }


@dataclass
class ServerSide:
    """The service's own request-duration histogram over one load (a difference of two scrapes): what
    the alert rules evaluate."""

    buckets: dict[float, float]  # upper bound (s) -> requests at or under it

    @classmethod
    def between(cls, before: dict[float, float], after: dict[float, float]) -> ServerSide:
        return cls({le: after[le] - before.get(le, 0.0) for le in after})

    @property
    def count(self) -> float:
        return self.buckets.get(float("inf"), 0.0)

    def within(self, le_s: float) -> float:
        """Share of requests answered within ``le_s`` (exact when it is a bucket bound: the SLO's is)."""
        return self.buckets.get(le_s, float("nan")) / self.count if self.count else float("nan")

    def quantile_ms(self, q: float) -> float:
        """As PromQL's histogram_quantile: linear within the bucket that holds the quantile."""
        bounds = sorted(self.buckets)
        rank, lower, below = q * self.count, 0.0, 0.0
        for le in bounds:
            n = self.buckets[le]
            if n >= rank and self.count:
                if le == float("inf"):
                    return 1000 * lower
                return 1000 * (lower + (le - lower) * (rank - below) / max(n - below, 1e-12))
            lower, below = le, n
        return float("nan")


def scrape_durations(base_url: str) -> dict[float, float]:
    """The request-duration histogram's cumulative buckets, read from ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=5.0).text
    for family in text_string_to_metric_families(text):
        if family.name == "infersearch_request_duration_seconds":
            return {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}
    return {}


@dataclass(frozen=True)
class Payload:
    """What each request of a load sends: a route, a body and its headers, and how many samples it holds."""

    path: str
    body: bytes
    headers: dict[str, str]
    samples: int = 1


def request_body(sample_shape: tuple[int, ...], seed: int = 0) -> Payload:
    """One sample as JSON on ``/v1/predict``, as a client would send it."""
    x = np.random.default_rng(seed).standard_normal(sample_shape).astype(np.float32)
    body = json.dumps({"inputs": x.round(4).tolist()}).encode()
    return Payload("/v1/predict", body, {"content-type": "application/json"})


def binary_v2(model: str, sample_shape: tuple[int, ...], samples: int, seed: int = 0) -> Payload:
    """A batch of ``samples`` as an Open Inference Protocol request with binary tensors in and out
    (what ``tritonclient`` and ``perf_analyzer`` send by default)."""
    x = np.random.default_rng(seed).standard_normal((samples, *sample_shape)).astype(np.float32)
    head = json.dumps({
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    headers = {"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"}
    return Payload(f"/v2/models/{model}/infer", head + x.tobytes(), headers, samples)


async def _one(client: httpx.AsyncClient, payload: Payload, due: float, result: LoadResult) -> None:
    try:
        r = await client.post(payload.path, content=payload.body, headers=payload.headers)
        code: int | str = r.status_code
    except httpx.TimeoutException:
        code = "timeout"
    except httpx.TransportError:
        code = "transport"
    if code == 200:
        result.latencies_ms.append(1000 * (time.perf_counter() - due))
    result.codes[code] += 1


def _clients(base_url: str, n: int, timeout_s: float, stack: contextlib.AsyncExitStack):
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return [
        stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits))
        for _ in range(n)
    ]


async def _open(base_url: str, body: Payload, rate: float, duration_s: float, timeout_s: float, seed: int):
    result = LoadResult(rate, 0.0, duration_s)
    rng = random.Random(seed)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await c for c in _clients(base_url, CONNECTIONS, timeout_s, stack)]
        start = due = time.perf_counter()
        tasks: set[asyncio.Task] = set()
        for i in itertools.count():
            if due >= start + duration_s:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= MAX_OUTSTANDING:
                result.codes["dropped"] += 1
            else:
                task = asyncio.create_task(_one(clients[i % len(clients)], body, due, result))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            due += rng.expovariate(rate)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s + 1)
        result.elapsed_s = time.perf_counter() - start
        late = list(tasks)  # still unanswered past the client's timeout: counted, then cancelled cleanly
        result.codes["unanswered"] += len(late)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    return result


async def _closed(base_url: str, body: Payload, n: int, duration_s: float, timeout_s: float):
    result = LoadResult(None, 0.0, duration_s)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await c for c in _clients(base_url, n, timeout_s, stack)]
        start = time.perf_counter()
        end = start + duration_s

        async def loop(client: httpx.AsyncClient) -> None:
            while time.perf_counter() < end:
                await _one(client, body, time.perf_counter(), result)

        await asyncio.gather(*(loop(c) for c in clients))
        result.elapsed_s = time.perf_counter() - start
    return result


def offer(base_url: str, body: Payload, rate: float, duration_s: float, timeout_s: float = 5.0, seed: int = 0):
    """Poisson arrivals at ``rate`` requests/s for ``duration_s``."""
    return asyncio.run(_open(base_url, body, rate, duration_s, timeout_s, seed))


def offer_observed(base_url: str, body: Payload, rate: float, duration_s: float, seed: int = 0):
    """``offer``, with the service's own request-duration histogram over the same load."""
    before = scrape_durations(base_url)
    result = offer(base_url, body, rate, duration_s, seed=seed)
    return result, ServerSide.between(before, scrape_durations(base_url))


def saturate(base_url: str, body: Payload, clients: int, duration_s: float, timeout_s: float = 5.0) -> LoadResult:
    """``clients`` back-to-back clients for ``duration_s``: the most the service answers."""
    return asyncio.run(_closed(base_url, body, clients, duration_s, timeout_s))
