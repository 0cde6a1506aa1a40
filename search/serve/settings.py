"""What the service runs with: the serving settings (``serve-tune``'s pick unless given on the command
line) and the latency SLO its metrics and alerts use."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from infersearch.config import Config, ServeConfig

log = logging.getLogger("infersearch.serve")

TUNED = ("max_batch_size", "max_delay_ms", "workers", "threads")


def tuned_path(model_dir: Path) -> Path:
    """serve-tune's result sits beside the export it was measured on (the study's output folder)."""
    return model_dir.parent / "serving.json"


def with_tuned(sv: ServeConfig, model_dir: Path, digest: str, overrides: list[str]) -> ServeConfig:
    """``sv`` with serve-tune's pick for this exact artifact, except for keys given on the command line.
    A pick measured on another artifact (re-exported since) is ignored, and the log says so."""
    path = tuned_path(model_dir)
    if not path.is_file():
        return sv
    tuned = json.loads(path.read_text())
    if tuned.get("artifact_sha256") != digest:
        log.warning("%s was measured on another artifact: not used (run infersearch serve-tune again)", path)
        return sv
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    pick = {k: v for k, v in tuned["pick"].items() if k in TUNED and f"serve.{k}" not in given}
    if pick:
        log.info("serving settings from serve-tune (%s): %s", path, " ".join(f"{k}={v}" for k, v in pick.items()))
    return replace(sv, **pick)


def intra_op_threads(sv: ServeConfig) -> int:
    return sv.threads or max(1, (os.cpu_count() or 1) // max(1, sv.workers))


def slo_ms(cfg: Config, manifest: dict[str, Any]) -> tuple[float, str]:
    """The request latency SLO and where it came from: ``serve.slo_ms``, else ``study.latency_slo_ms``,
    else what the batching allows: the longest wait for a batch plus twice the measured p95 of a full one."""
    if cfg.serve.slo_ms is not None:
        return cfg.serve.slo_ms, "serve.slo_ms"
    if cfg.study.latency_slo_ms is not None:
        return cfg.study.latency_slo_ms, "study.latency_slo_ms"
    return derived_slo_ms(cfg.serve, manifest), "derived: serve.max_delay_ms + 2 x the batch p95"


def derived_slo_ms(sv: ServeConfig, manifest: dict[str, Any]) -> float:
    metrics = manifest.get("metrics") or {}
    study_batch = int((manifest.get("params") or {}).get("batch_size") or 1)
    p95 = float(metrics.get("latency_ms_p95") or 0.0)
    batch_p95 = p95 / study_batch * max(sv.max_batch_size, study_batch)  # per-sample cost at the serving batch
    return round(sv.max_delay_ms + 2 * batch_p95, 3)
