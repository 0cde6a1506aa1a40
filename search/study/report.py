"""Files derived from the study storage: trials.csv, pareto.json/.csv, recommendation.json, pareto.png."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from infersearch.cache import atomic_write_bytes, atomic_write_text
from infersearch.config import StudyConfig
from infersearch.report_table import table
from infersearch.study.pareto import confirmed_front, feasible, objective_values, recommend
from infersearch.study.storage import directions
from optuna.trial import FrozenTrial, TrialState

PARAM_COLUMNS = ("prune_ratio", "quant_bits", "precision", "batch_size", "engine")


@dataclass
class Summary:
    n_trials: int
    n_complete: int
    n_failed: int
    n_refused: int
    n_reused: int
    n_infeasible: int
    front: list[FrozenTrial]
    recommended: FrozenTrial | None
    moved: list[FrozenTrial]  # first-measured front members that the side-by-side confirmation dominated
    rule: str
    files: dict[str, Path]
    time_per_trial: dict[str, float]  # median seconds per step over measured trials


def _row(t: FrozenTrial, on_front: set[int], st: StudyConfig, confirmation: dict[str, Any]) -> dict[str, Any]:
    ua = t.user_attrs
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "measured": ua.get("measured", False),
        "reused_from": ua.get("reused_from", ""),
        "refused": ua.get("refused", False),
        "feasible": feasible(t) if t.state == TrialState.COMPLETE else "",
        "on_front": t.number in on_front,
    }
    row |= {f"param.{k}": v for k, v in (ua.get("params") or {}).items()}
    row |= {f"param.{k}": v for k, v in t.params.items()}
    for o, v in zip(st.objectives, t.values or [None] * len(st.objectives)):
        row[f"objective.{o.metric}"] = v
    row |= {f"metric.{k}": v for k, v in (ua.get("metrics") or {}).items()}
    row |= {f"constraint.{k}": v for k, v in t.constraints.items()}
    row |= {f"confirmed.{k}": v for k, v in confirmation.get(str(t.number), {}).items()}
    row["hypervolume"] = ua.get("hypervolume", "")
    row["emulated"] = (ua.get("env") or {}).get("emulated", "")
    row["error"] = ua.get("error", "")
    row["duration_s"] = t.duration.total_seconds() if t.duration else ""
    row |= {f"time.{k}": v for k, v in time_breakdown(t).items()}
    return row


def time_breakdown(t: FrozenTrial) -> dict[str, float]:
    """A measured trial's seconds per step (baseline load, prune, recover, engine build: export and
    quantize, evaluate: the metric on validation and test, latency) and ``harness``: the rest of the
    trial's wall time (process, config, storage, logging)."""
    steps = dict(t.user_attrs.get("timings_s") or {})
    if steps and t.duration is not None and "reused_from" not in t.user_attrs:
        steps["harness"] = max(0.0, t.duration.total_seconds() - sum(steps.values()))
    return steps


def median_breakdown(trials: list[FrozenTrial]) -> dict[str, float]:
    """Median seconds per step over the measured trials that have a breakdown."""
    rows = [time_breakdown(t) for t in trials]
    rows = [r for r in rows if "harness" in r]
    steps = list(dict.fromkeys(k for r in rows for k in r))
    return {k: statistics.median(r.get(k, 0.0) for r in rows) for k in steps}


def _csv(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _member(t: FrozenTrial, st: StudyConfig) -> dict[str, Any]:
    ua = t.user_attrs
    return {
        "number": t.number,
        "params": ua.get("params") or dict(t.params),
        "optuna_params": dict(t.params),
        "values": {o.metric: v for o, v in zip(st.objectives, t.values)},
        "metrics": ua.get("metrics", {}),
        "baseline": ua.get("baseline", {}),
        "emulated": (ua.get("env") or {}).get("emulated", False),
        "overrides": ua.get("overrides", []),
    }


def current_front(study: optuna.Study, st: StudyConfig) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """The feasible front, after the side-by-side confirmation when the study has one: (front, moved off)."""
    return confirmed_front(study, study.user_attrs.get("confirmation", {}), st.objectives)


def trial_rows(study: optuna.Study, st: StudyConfig) -> list[dict[str, Any]]:
    """One row per trial, as in trials.csv."""
    numbers = {t.number for t in current_front(study, st)[0]}
    confirmation = study.user_attrs.get("confirmation", {})
    return [_row(t, numbers, st, confirmation) for t in study.get_trials(deepcopy=False)]


def front_rows(summary: Summary, st: StudyConfig) -> list[dict[str, Any]]:
    """One flat row per front member: the rows of pareto.json."""
    rows = []
    for t in summary.front:
        m = _member(t, st)
        rows.append(
            {"number": m["number"]}
            | {f"param.{k}": v for k, v in m["params"].items()}
            | {f"objective.{k}": v for k, v in m["values"].items()}
            | {f"metric.{k}": v for k, v in m["metrics"].items()}
        )
    return rows


def write_report(study: optuna.Study, st: StudyConfig, out_dir: str | Path | None = None) -> Summary:
    out = Path(out_dir or st.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    members, moved = current_front(study, st)
    confirmation = study.user_attrs.get("confirmation", {})
    rows = trial_rows(study, st)
    files = {"trials": out / "trials.csv", "pareto_json": out / "pareto.json", "pareto_csv": out / "pareto.csv"}
    atomic_write_text(files["trials"], _csv(rows))
    pareto = [_member(t, st) | {"confirmed": confirmation.get(str(t.number))} for t in members]
    atomic_write_text(files["pareto_json"], json.dumps(pareto, indent=2, default=str))
    atomic_write_text(files["pareto_csv"], _csv([r for r in rows if r["on_front"]]))
    recommended, rule = None, "no feasible configuration"
    if members:
        values = [objective_values(t, confirmation, st.objectives) for t in members]
        recommended, rule = recommend(members, st.recommend, directions(st), values)
        rec = _member(recommended, st) | {
            "rule": rule,
            "study": st.name,
            "confirmed": confirmation.get(str(recommended.number)),
        }
        files["recommendation"] = out / "recommendation.json"
        atomic_write_text(files["recommendation"], json.dumps(rec, indent=2, default=str))
    if _metric_name(trials) == "accuracy":  # plot_png's y axis is accuracy until it takes st.objectives
        files["plot"] = out / "pareto.png"
        atomic_write_bytes(files["plot"], plot_png(trials, members, recommended, st))
    ua = [t.user_attrs for t in trials]
    return Summary(
        n_trials=len(trials),
        n_complete=sum(t.state == TrialState.COMPLETE for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials),
        n_refused=sum(bool(a.get("refused")) for a in ua),
        n_reused=sum("reused_from" in a for a in ua),
        n_infeasible=sum(t.state == TrialState.COMPLETE and not feasible(t) for t in trials),
        front=members,
        recommended=recommended,
        moved=moved,
        rule=rule,
        files=files,
        time_per_trial=median_breakdown(trials),
    )


def front_table(summary: Summary, st: StudyConfig) -> str:
    metric = _metric_name(summary.front)
    headers = ["#", *PARAM_COLUMNS, *(o.metric for o in st.objectives), f"{metric} drop", "p95 ms", "speed-up"]
    rows = []
    for t in summary.front:
        p, m = t.user_attrs.get("params", {}), t.user_attrs.get("metrics", {})
        mark = "*" if summary.recommended is not None and t.number == summary.recommended.number else ""
        emu = " (emulated)" if (t.user_attrs.get("env") or {}).get("emulated") else ""
        rows.append(
            [
                f"{t.number}{mark}",
                *(p.get(k, "") for k in PARAM_COLUMNS),
                *t.values,
                m.get(f"{metric}_drop", ""),
                m.get("latency_ms_p95", ""),
                f"{m.get('speedup_vs_baseline', float('nan')):.2f}x{emu}",
            ]
        )
    return table(headers, rows)


def _metric_name(trials: list[FrozenTrial]) -> str:
    """The model's metric, as its trials recorded it ("accuracy" for studies recorded before it was stored)."""
    return next((t.user_attrs["metric"]["name"] for t in trials if "metric" in t.user_attrs), "accuracy")


def summary_text(summary: Summary, st: StudyConfig) -> str:
    lines = [
        f"study {st.name!r}: {summary.n_trials} trials, {summary.n_complete} complete, {summary.n_failed} failed, "
        f"{summary.n_refused} refused, {summary.n_reused} reused, {summary.n_infeasible} infeasible",
        f"Pareto front ({len(summary.front)} feasible, non-dominated; * = recommended):",
        front_table(summary, st) if summary.front else "  (empty: no feasible configuration)",
    ]
    if summary.moved:
        lines.append(
            "moved off the front when re-measured side by side: "
            + ", ".join(f"trial {t.number}" for t in summary.moved)
        )
    if summary.recommended is not None:
        lines.append(f"recommended: trial {summary.recommended.number} ({summary.rule})")
        lines.append("  " + " ".join(summary.recommended.user_attrs.get("overrides", [])))
    if summary.time_per_trial:
        total = sum(summary.time_per_trial.values())
        lines.append(
            "time per measured trial (median s; trials.csv has each trial's, as time.*): "
            + ", ".join(f"{k} {v:.2f}" for k, v in summary.time_per_trial.items())
            + f" (sum {total:.2f})"
        )
    lines.append(f"files: {summary.files['trials'].parent}")
    return "\n".join(lines)


def plot_png(trials, members, recommended, st: StudyConfig) -> bytes:
    """Accuracy against per-sample latency: colour by engine, marker by bit-width and precision, front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    x_key, y_key = "latency_ms_per_sample", "accuracy"
    colours = {"eager": "tab:blue", "compile": "tab:purple", "onnxruntime": "tab:orange", "openvino": "tab:green"}
    markers = {(32, "fp32"): "o", (32, "bf16"): "D", (32, "fp16"): "v", (8, "fp32"): "s", (8, "bf16"): "P"}
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    seen = set()
    for t in trials:
        if t.state != TrialState.COMPLETE or "reused_from" in t.user_attrs:
            continue
        m, p = t.user_attrs.get("metrics", {}), t.user_attrs.get("params", {})
        if x_key not in m:
            continue
        prec, bits = p.get("precision", "fp32"), p.get("quant_bits", 32)
        label = f"{prec}, {bits}-bit" + (" (emulated)" if (t.user_attrs.get("env") or {}).get("emulated") else "")
        ax.scatter(
            m[x_key],
            m[y_key],
            c=colours.get(prec, "tab:gray"),
            marker=markers.get(bits, "D"),
            alpha=1.0 if feasible(t) else 0.3,
            edgecolors="k" if feasible(t) else "none",
            label=None if label in seen else label,
            s=40,
        )
        seen.add(label)
    pts = sorted(
        (t.user_attrs["metrics"][x_key], t.user_attrs["metrics"][y_key])
        for t in members
        if x_key in t.user_attrs.get("metrics", {})
    )
    if pts:
        ax.plot(*zip(*pts), "k--", lw=1, drawstyle="steps-post", label="Pareto front (feasible)")
    if recommended is not None and x_key in recommended.user_attrs.get("metrics", {}):
        m = recommended.user_attrs["metrics"]
        ax.scatter(m[x_key], m[y_key], marker="*", s=300, c="gold", edgecolors="k", zorder=5, label="recommended")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("latency per sample (ms, log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"study {st.name}: faded = infeasible")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
