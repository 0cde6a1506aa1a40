"""Prometheus metrics of the service, in seconds, with one bucket exactly at the latency SLO: request
duration, and apart from it (as Triton splits it) queue wait, batch compute and (de)serialisation, and a
batch-size histogram."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

# 0.1 ms to about 2 s, roughly three per decade
BASE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


def slo_bucket(slo_s: float) -> float:
    """The bucket bound at the SLO, as the alert rules name it (``le="<slo>"``)."""
    return round(slo_s, 9)


def latency_buckets(slo_s: float | None) -> tuple[float, ...]:
    """The base buckets plus one at the SLO, so ``le="<slo>"`` counts exactly the requests that met it."""
    buckets = set(BASE_BUCKETS) | ({slo_bucket(slo_s)} if slo_s else set())
    return tuple(sorted(buckets))


def batch_buckets(max_batch: int) -> tuple[float, ...]:
    sizes, n = [], 1
    while n < max_batch:
        sizes.append(n)
        n *= 2
    return (*sizes, max_batch)


@dataclass
class Totals:
    """Running totals in Triton's statistics shape (``GET /v2/models/{m}/stats``, which perf_analyzer reads to
    split server time into queue, compute and (de)serialisation): counts and nanoseconds."""

    success: int = 0
    success_ns: int = 0
    fail: int = 0
    fail_ns: int = 0
    queue_ns: int = 0
    queued: int = 0
    executions: int = 0  # batches run
    # per request, as Triton counts them (perf_analyzer requires the three compute counts equal): requests
    # whose batch ran, each charged its batch's model time; decoding its body (compute_input) and writing its
    # answer (compute_output) are summed over the requests answered
    computed: int = 0
    compute_ns: int = 0
    decode_ns: int = 0
    encode_ns: int = 0
    inferences: int = 0  # samples
    last_ms: int = 0  # when the last batch ran, ms since the epoch

    def as_stats(self, model: str) -> dict:
        pair = lambda n, ns: {"count": n, "ns": ns}  # noqa: E731
        return {
            "model_stats": [
                {
                    "name": model,
                    "version": "1",
                    "last_inference": self.last_ms,
                    "inference_count": self.inferences,
                    "execution_count": self.executions,
                    "inference_stats": {
                        "success": pair(self.success, self.success_ns),
                        "fail": pair(self.fail, self.fail_ns),
                        "queue": pair(self.queued, self.queue_ns),
                        "compute_input": pair(self.computed, self.decode_ns),
                        "compute_infer": pair(self.computed, self.compute_ns),
                        "compute_output": pair(self.computed, self.encode_ns),
                    },
                    "batch_stats": [],
                }
            ]
        }


@dataclass
class ServeMetrics:
    registry: CollectorRegistry
    request: Histogram
    queue: Histogram
    compute: Histogram
    batch: Histogram
    decode: Histogram
    encode: Histogram
    requests: Counter
    in_flight: Gauge
    model: Info
    totals: Totals


def make_metrics(slo_s: float | None, max_batch: int) -> ServeMetrics:
    disable_created_metrics()  # no *_created series: a scrape holds what the dashboards and alerts read
    reg = CollectorRegistry()
    lat = latency_buckets(slo_s)
    return ServeMetrics(
        registry=reg,
        request=Histogram(
            "infersearch_request_duration_seconds", "Time from request read to answer", registry=reg, buckets=lat
        ),
        queue=Histogram("infersearch_queue_seconds", "Time a request waited for its batch", registry=reg, buckets=lat),
        compute=Histogram("infersearch_compute_seconds", "Model time of one batch", registry=reg, buckets=lat),
        batch=Histogram(
            "infersearch_batch_size", "Samples per executed batch", registry=reg, buckets=batch_buckets(max_batch)
        ),
        decode=Histogram(
            "infersearch_decode_seconds", "Time to read a request body into a tensor", registry=reg, buckets=lat
        ),
        encode=Histogram("infersearch_encode_seconds", "Time to write a response body", registry=reg, buckets=lat),
        requests=Counter("infersearch_requests", "Requests by HTTP status code", ["code"], registry=reg),
        in_flight=Gauge("infersearch_in_flight_requests", "Requests being served now", registry=reg),
        model=Info("infersearch_model", "The served study, trial, configuration and artifact", registry=reg),
        totals=Totals(),
    )
