"""Prometheus alert rules derived from the study: the served p99 over the SLO, the SLO's error budget
burning (the SRE workbook's multiwindow burn rate, read from the histogram's bucket at the SLO), the
ratio of 5xx answers, and the scheduled sweep's regression (exit 5) or silence, from the textfile
that each scheduled run writes (infersearch.study.textfile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from infersearch.config import AlertsConfig
from infersearch.core.cache import atomic_write_text
from infersearch.serve.metrics import slo_bucket

REQ = "infersearch_request_duration_seconds"


def _sel(al: AlertsConfig, extra: str = "") -> str:
    parts = [*(f'{k}="{v}"' for k, v in al.selector.items()), *([extra] if extra else [])]
    return "{" + ",".join(parts) + "}" if parts else ""


def _service_rules(al: AlertsConfig, study: str, slo_ms: float) -> list[dict[str, Any]]:
    slo_s = slo_bucket(slo_ms / 1000)
    le = floatToGoString(slo_s)
    budget = 1 - al.objective
    labels = {"severity": "page", "study": study}

    within = _sel(al, f'le="{le}"')

    def slow_share(window: str) -> str:  # share of requests slower than the SLO over the window
        return f"(1 - sum(rate({REQ}_bucket{within}[{window}])) / sum(rate({REQ}_count{_sel(al)}[{window}])))"

    long, short = al.burn_windows
    p99 = f"histogram_quantile(0.99, sum by (le) (rate({REQ}_bucket{_sel(al)}[{al.window}])))"
    five = _sel(al, 'code=~"5.."')
    errors = (
        f"sum(rate(infersearch_requests_total{five}[{al.window}]))"
        f" / sum(rate(infersearch_requests_total{_sel(al)}[{al.window}]))"
    )
    return [
        {
            "alert": "InfersearchLatencyP99OverSLO",
            "expr": f"{p99} > {le}",
            "for": al.pending,
            "labels": dict(labels),
            "annotations": {
                "summary": f"p99 request latency of {study} is over its SLO of {slo_ms:g} ms",
                "description": f"p99 over {al.window}: {{{{ $value | humanizeDuration }}}} (SLO {slo_ms:g} ms)",
            },
        },
        {
            "alert": "InfersearchSLOBurnRate",
            "expr": f"{slow_share(long)} > {al.burn_rate:g} * {budget:g} and {slow_share(short)} > "
            f"{al.burn_rate:g} * {budget:g}",
            "for": al.pending,
            "labels": dict(labels),
            "annotations": {
                "summary": f"{study} burns its latency error budget {al.burn_rate:g}x too fast",
                "description": f"over {long} and {short}, more than {100 * al.burn_rate * budget:.3g}% of requests "
                f"took longer than {slo_ms:g} ms (objective {100 * al.objective:g}% within)",
            },
        },
        {
            "alert": "InfersearchErrorRatio",
            "expr": f"{errors} > {al.max_error_ratio:g}",
            "for": al.pending,
            "labels": dict(labels),
            "annotations": {
                "summary": f"{study} answers more than {100 * al.max_error_ratio:g}% of requests with 5xx",
                "description": "5xx share over " + al.window + ": {{ $value | humanizePercentage }}",
            },
        },
    ]


def _sweep_rules(al: AlertsConfig, study: str) -> list[dict[str, Any]]:
    sel = f'{{study="{study}"}}'
    rules: list[dict[str, Any]] = [
        {
            "alert": "InfersearchSweepRegressed",
            "expr": f"infersearch_sweep_last_exit_status{sel} == 5",
            "labels": {"severity": "ticket", "study": study},
            "annotations": {
                "summary": f"the last scheduled sweep of {study} exited 5: its recommendation got worse",
                "description": "the sweep's log says which trials and figures; see README, 'What exit 5 means'",
            },
        },
        {
            "alert": "InfersearchSweepFailed",
            "expr": f"infersearch_sweep_last_exit_status{sel} > 0 and infersearch_sweep_last_exit_status{sel} != 5",
            "labels": {"severity": "ticket", "study": study},
            "annotations": {
                "summary": f"the last scheduled sweep of {study} exited {{{{ $value }}}}",
                "description": "2 bad input or a changed model, 3 every trial failed, 4 nothing feasible",
            },
        },
    ]
    if al.stale_after_h is not None:
        rules.append(
            {
                "alert": "InfersearchSweepStale",
                "expr": f"time() - infersearch_sweep_last_run_timestamp_seconds{sel} > {3600 * al.stale_after_h:g}",
                "labels": {"severity": "ticket", "study": study},
                "annotations": {"summary": f"no scheduled sweep of {study} finished in {al.stale_after_h:g} h"},
            }
        )
    return rules


def rules(al: AlertsConfig, study: str, slo_ms: float) -> dict[str, Any]:
    return {
        "groups": [
            {"name": f"infersearch-serve-{study}", "rules": _service_rules(al, study, slo_ms)},
            {"name": f"infersearch-sweep-{study}", "rules": _sweep_rules(al, study)},
        ]
    }


def write_rules(path: Path, al: AlertsConfig, study: str, slo_ms: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(rules(al, study, slo_ms), sort_keys=False, width=200))
    return path
