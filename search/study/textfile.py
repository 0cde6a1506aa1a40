"""What a scheduled run leaves for Prometheus: a textfile-collector file (node_exporter's
``--collector.textfile.directory``) with its exit status, when it finished and how long it took, and
the recommendation's latency and metric. The alert rules (infersearch.serve.alerts) page on exit 5."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile


def textfile_path(directory: Path, study: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in study)
    return directory / f"infersearch_{safe}.prom"


def write_sweep_metrics(
    directory: Path,
    study: str,
    code: int,
    duration_s: float,
    recommendation: dict | None,
) -> Path:
    """``recommendation``: this run's entry of the study's ``recommendations`` (trial, values), or None.
    Written whole or not at all (prometheus-client writes a temporary file and renames it)."""
    reg = CollectorRegistry()
    g = lambda name, doc, labels=("study",): Gauge(name, doc, labels, registry=reg)  # noqa: E731
    g("infersearch_sweep_last_exit_status", "Exit status of the last sweep run (0 ok, 5 regressed)").labels(study).set(
        code
    )
    g("infersearch_sweep_last_run_timestamp_seconds", "When the last sweep run finished").labels(study).set(time.time())
    g("infersearch_sweep_last_run_duration_seconds", "How long the last sweep run took").labels(study).set(duration_s)
    if recommendation is not None:
        values = recommendation.get("values", {})
        g("infersearch_sweep_recommended_trial", "The trial the last run recommends").labels(study).set(
            recommendation["trial"]
        )
        if "latency_ms_per_sample" in values:
            g(
                "infersearch_sweep_recommended_latency_seconds_per_sample",
                "The recommendation's latency per sample, anchored to the baseline",
            ).labels(study).set(values["latency_ms_per_sample"] / 1000)
        gen = recommendation.get("generation") or {}
        for key, name, doc, scale in (
            ("tpot_ms", "tpot_seconds", "time per output token (one decode step), anchored", 1e-3),
            ("ttft_ms", "ttft_seconds", "time to first token (the prefill), anchored", 1e-3),
            ("tokens_per_s", "tokens_per_second", "generated tokens per second over the batch", 1.0),
        ):
            if key in gen:
                g(f"infersearch_sweep_recommended_{name}", f"The language-model recommendation's {doc}").labels(
                    study
                ).set(gen[key] * scale)
        metric = g("infersearch_sweep_recommended_objective", "The recommendation's objectives", ("study", "objective"))
        for name, value in values.items():
            metric.labels(study, name).set(value)
    directory.mkdir(parents=True, exist_ok=True)
    path = textfile_path(directory, study)
    write_to_textfile(str(path), reg)
    return path
