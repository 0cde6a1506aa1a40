"""Files derived from the study storage: trials.csv, pareto.json/.csv, recommendation.json, pareto.png."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from infersearch.config import StudyConfig
from infersearch.core.cache import atomic_write_bytes, atomic_write_text
from infersearch.report.table import table
from infersearch.study.attrs import attrs_of
from infersearch.study.figures import disturbed, reported, timed, trusted
from infersearch.study.pareto import (
    complete_values,
    confirmed_front,
    feasible,
    non_dominated,
    objective_values,
    recommend,
)
from infersearch.study.regression import keep_previous
from infersearch.study.storage import directions

PARAM_COLUMNS = ("prune_ratio", "quant_bits", "precision", "batch_size", "engine")


def quant_text(params: dict) -> str:
    """The bit-width, with the int8 scheme when one was chosen (``8 dynamic``); a float model has none."""
    bits, scheme = params.get("quant_bits", 32), params.get("quant_scheme", "auto")
    if bits != 32 and "quant_group_size" in params:  # a language model's weight-only group
        return f"{bits} g{params['quant_group_size']}"
    return f"{bits} {scheme}" if bits != 32 and scheme not in ("auto", None) else str(bits)


@dataclass
class Summary:
    n_trials: int
    n_complete: int
    n_failed: int
    proposals: dict[str, int]  # the sampler's proposals that launched nothing (infersearch.study.proposals)
    n_infeasible: int
    front: list[FrozenTrial]
    recommended: FrozenTrial | None
    moved: list[FrozenTrial]  # first-measured front members that the side-by-side confirmation dominated
    rule: str
    files: dict[str, Path]
    time_per_trial: dict[str, float]  # median seconds per step over measured trials
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # reported metrics (study/figures.py)
    busy: str = ""  # how many trials the machine was too busy to measure, and how busy; "" when none


def _row(
    t: FrozenTrial, on_front: set[int], st: StudyConfig, confirmation: dict[str, Any], figures: dict[str, Any]
) -> dict[str, Any]:
    a = attrs_of(t)
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "measured": bool(a.measured),
        "reused_from": "" if a.reused_from is None else a.reused_from,
        "refused": a.refused,
        "feasible": feasible(t) if t.state == TrialState.COMPLETE else "",
        "on_front": t.number in on_front,
    }
    row |= {f"param.{k}": v for k, v in a.params.items()}
    row |= {f"param.{k}": v for k, v in t.params.items()}
    for o, v in zip(st.objectives, t.values or [None] * len(st.objectives)):
        row[f"objective.{o.metric}"] = v  # Optuna's value: the first measurement
    for o, v in zip(st.objectives, objective_values(t, figures, st.objectives) if t.values else []):
        row[f"reported.{o.metric}"] = v  # what the front and the recommendation use (study/figures.py)
    if t.values:
        row["disturbed"] = disturbed(t, figures)
    row |= {f"metric.{k}": v for k, v in a.metrics.items()}
    row |= {f"constraint.{k}": v for k, v in t.constraints.items()}
    row |= {f"confirmed.{k}": v for k, v in confirmation.get(str(t.number), {}).items()}
    row["hypervolume"] = "" if a.hypervolume is None else a.hypervolume
    row["emulated"] = a.emulated if a.env else ""
    row["error"] = a.error
    row["duration_s"] = t.duration.total_seconds() if t.duration else ""
    row |= {f"time.{k}": v for k, v in time_breakdown(t).items()}
    return row


def time_breakdown(t: FrozenTrial) -> dict[str, float]:
    """A measured trial's seconds per step (baseline load, prune, recover, engine build: export and
    quantize, evaluate: the metric on validation and test, latency) and ``harness``: the rest of the
    trial's wall time (process, config, storage, logging)."""
    a = attrs_of(t)
    steps = dict(a.timings_s)
    if steps and t.duration is not None and a.reused_from is None:
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


def _member(t: FrozenTrial, st: StudyConfig, figures: dict[str, Any]) -> dict[str, Any]:
    """A front member as pareto.json and recommendation.json give it: values and metrics as reported
    (confirmed, or re-derived from the current anchor), Optuna's first-measured values beside them."""
    a = attrs_of(t)
    return {
        "number": t.number,
        "params": a.params or dict(t.params),
        "optuna_params": dict(t.params),
        "values": {o.metric: v for o, v in zip(st.objectives, objective_values(t, figures, st.objectives))},
        "first_values": {o.metric: v for o, v in zip(st.objectives, t.values)},
        "disturbed": disturbed(t, figures),
        "metrics": figures.get(str(t.number), a.metrics),
        "baseline": a.baseline,
        "emulated": a.emulated,
        "overrides": a.overrides,
    }


def current_front(
    study: optuna.Study, st: StudyConfig, figures: dict[str, Any] | None = None
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """The feasible front at the reported figures (confirmed where re-timed): (front, moved off)."""
    return confirmed_front(study, reported(study) if figures is None else figures, st.objectives)


def trial_rows(study: optuna.Study, st: StudyConfig, figures: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per trial, as in trials.csv."""
    figures = reported(study) if figures is None else figures
    numbers = {t.number for t in current_front(study, st, figures)[0]}
    confirmation = study.user_attrs.get("confirmation", {})
    return [_row(t, numbers, st, confirmation, figures) for t in study.get_trials(deepcopy=False)]


def front_rows(summary: Summary, st: StudyConfig) -> list[dict[str, Any]]:
    """One flat row per front member: the rows of pareto.json."""
    rows = []
    for t in summary.front:
        m = _member(t, st, summary.figures)
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
    confirmation, figures = study.user_attrs.get("confirmation", {}), reported(study)
    members, moved = current_front(study, st, figures)
    rows = trial_rows(study, st, figures)
    files = {"trials": out / "trials.csv", "pareto_json": out / "pareto.json", "pareto_csv": out / "pareto.csv"}
    atomic_write_text(files["trials"], _csv(rows))
    pareto = [_member(t, st, figures) | {"confirmed": confirmation.get(str(t.number))} for t in members]
    atomic_write_text(files["pareto_json"], json.dumps(pareto, indent=2, default=str))
    atomic_write_text(files["pareto_csv"], _csv([r for r in rows if r["on_front"]]))
    recommended, rule = _recommend(study, st, members, figures, confirmation)
    if recommended is not None:
        rec = _member(recommended, st, figures) | {
            "rule": rule,
            "study": st.name,
            "confirmed": confirmation.get(str(recommended.number)),
        }
        files["recommendation"] = out / "recommendation.json"
        atomic_write_text(files["recommendation"], json.dumps(rec, indent=2, default=str))
    files["plot"] = out / "pareto.png"
    atomic_write_bytes(files["plot"], plot_png(trials, members, recommended, st, figures))
    return Summary(
        n_trials=len(trials),
        n_complete=sum(t.state == TrialState.COMPLETE for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials),
        proposals=dict(study.user_attrs.get("proposals") or {}),
        n_infeasible=sum(t.state == TrialState.COMPLETE and not feasible(t) for t in trials),
        front=members,
        recommended=recommended,
        moved=moved,
        rule=rule,
        files=files,
        time_per_trial=median_breakdown(trials),
        figures=figures,
        busy=busy_text(trials, figures, recommended),
    )


def _recommend(study, st: StudyConfig, members, figures, confirmation) -> tuple[FrozenTrial | None, str]:
    """One configuration, from the front of the trials with a trusted figure (the front itself once the
    confirmation re-timed every member); from the whole front, marked, when none has one."""
    if not members:
        return None, "no feasible configuration"
    ok = [t for t in complete_values(study) if feasible(t) and trusted(t, figures, confirmation)]
    ok_values = [objective_values(t, figures, st.objectives) for t in ok]
    pool = [t for t, keep in zip(ok, non_dominated(ok_values, directions(st))) if keep] or members
    values = [objective_values(t, figures, st.objectives) for t in pool]
    recommended, rule = recommend(pool, st.recommend, directions(st), values)
    if pool is members:
        rule += "; no feasible trial has an undisturbed confirmed figure (the machine stayed busy): marked disturbed"
    previous = study.user_attrs.get("confirmation_context", {}).get("previous_recommendation")
    by_number = {t.number: t for t in pool}
    kept = keep_previous(
        recommended, by_number.get(previous), {t.number: v for t, v in zip(pool, values)}, confirmation, st
    )
    if kept:
        recommended, rule = by_number[previous], f"{rule}; {kept}"
    return recommended, rule


def busy_text(trials: list[FrozenTrial], figures: dict[str, Any], recommended: FrozenTrial | None) -> str:
    """One line when the machine was too busy to measure some trials: how many, how busy; "" otherwise."""
    measured = [t for t in trials if t.state == TrialState.COMPLETE and "machine_state" in attrs_of(t).metrics]
    hit = [attrs_of(t).metrics for t in measured if attrs_of(t).metrics.get("machine_disturbed")]
    if not hit:
        return ""
    states = [m["machine_state"] for m in hit]
    loads = [m["foreign_cores"] for m in hit if "foreign_cores" in m]
    load = f", other programs on {min(loads):.1f}-{max(loads):.1f} cores" if loads else ""
    threads = max((attrs_of(t).env.get("threads", 1) for t in measured), default=1)
    spare = threads - round(statistics.median(loads)) if loads else 0
    if 0 < spare < threads:  # a neighbour that stays on whole cores: leave them to it, time on the rest
        load += f"; measure.threads={spare} would leave them the cores they use"
    rec = ""
    if recommended is not None and disturbed(recommended, figures):
        rec = "; the recommendation's own figure is disturbed: re-run the study when the machine is quiet"
    return (
        f"the machine was too busy to measure {len(hit)} of {len(measured)} trials (baseline at "
        f"{min(states):.2f}-{max(states):.2f}x its anchor{load}): their figures are marked disturbed in the front "
        f"table, trials.csv, pareto.json and W&B, and are never recommended unless re-timed quietly{rec}"
    )


def front_table(summary: Summary, st: StudyConfig) -> str:
    """The front at its reported figures; "timed" says which: confirmed, first (re-derived from the current
    anchor where it moved) or DISTURBED (the machine never settled: not a figure to rely on)."""
    metric = _metric_name(summary.front)
    lm = any("prune_depth" in attrs_of(t).params for t in summary.front)  # a language model's study
    params = ("prune_ratio", "prune_depth", *PARAM_COLUMNS[1:]) if lm else PARAM_COLUMNS
    speed = ("ttft_ms", "tokens_per_s") if lm else ("latency_ms_p95",)
    headers = ["#", *params, *(o.metric for o in st.objectives), f"{metric} drop", *speed]
    headers.append("TPOT speed-up" if lm else "speed-up")
    rows = []
    for t in summary.front:
        a = attrs_of(t)
        p, m = a.params, summary.figures.get(str(t.number), a.metrics)
        mark = "*" if summary.recommended is not None and t.number == summary.recommended.number else ""
        emu = " (emulated)" if a.emulated else ""
        rows.append(
            [
                f"{t.number}{mark}",
                *(quant_text(p) if k == "quant_bits" else p.get(k, "") for k in params),
                *objective_values(t, summary.figures, st.objectives),
                m.get(f"{metric}_drop", ""),
                *(m.get(k, "") for k in speed),
                f"{m.get('speedup_vs_baseline', float('nan')):.2f}x{emu}",
                timed(m),
            ]
        )
    return table([*headers, "timed"], rows)


def _metric_name(trials: list[FrozenTrial]) -> str:
    """The model's metric, as its trials recorded it ("accuracy" for studies recorded before it was stored)."""
    return next((m["name"] for t in trials if (m := attrs_of(t).metric)), "accuracy")


def proposals_text(counts: dict[str, int]) -> str:
    p = {k: counts.get(k, 0) for k in ("repeated", "refused", "in_flight")}
    return f"{p['repeated']} repeats, {p['refused']} refused, {p['in_flight']} in flight elsewhere"


def summary_text(summary: Summary, st: StudyConfig) -> str:
    lines = [
        f"study {st.name!r}: {summary.n_trials} trials, {summary.n_complete} complete, {summary.n_failed} failed, "
        f"{summary.n_infeasible} infeasible; not stored, the sampler's {proposals_text(summary.proposals)}",
        f"Pareto front ({len(summary.front)} feasible, non-dominated; * = recommended):",
        front_table(summary, st) if summary.front else "  (empty: no feasible configuration)",
    ]
    if summary.moved:
        lines.append(
            "moved off the front when re-measured side by side: "
            + ", ".join(f"trial {t.number}" for t in summary.moved)
        )
    if summary.busy:
        lines.append(summary.busy)
    if summary.recommended is not None:
        lines.append(f"recommended: trial {summary.recommended.number} ({summary.rule})")
        lines.append("  " + " ".join(attrs_of(summary.recommended).overrides))
    if summary.time_per_trial:
        total = sum(summary.time_per_trial.values())
        lines.append(
            "time per measured trial (median s; trials.csv has each trial's, as time.*): "
            + ", ".join(f"{k} {v:.2f}" for k, v in summary.time_per_trial.items())
            + f" (sum {total:.2f})"
        )
    lines.append(f"files: {summary.files['trials'].parent}")
    return "\n".join(lines)


ENGINE_COLOURS = {"eager": "tab:blue", "compile": "tab:purple", "onnxruntime": "tab:orange", "openvino": "tab:green"}
MARKERS = "osD^vPX<>ph"


def _style_keys(t: FrozenTrial) -> tuple[str, tuple[int, str, str]]:
    p = attrs_of(t).params
    bits = int(p.get("quant_bits", 32))
    return str(p.get("engine", "?")), (
        bits,
        quant_text(p).removeprefix(str(bits)).strip(),
        str(p.get("precision", "fp32")),
    )


def pareto_figure(trials, members, recommended, st: StudyConfig, figures: dict[str, Any] | None = None):
    """The study's first objective against its last: colour by engine, marker by (bit-width and int8 scheme,
    precision), infeasible faded, the feasible front joined, the recommendation starred. A trial re-timed by
    the confirmation sits at its confirmed figures (those the front and the recommendation use), with an
    arrow from where it was first measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.lines import Line2D

    y_obj, x_obj = st.objectives[0], st.objectives[-1]
    shown = [t for t in trials if t.state == TrialState.COMPLETE and attrs_of(t).reused_from is None and t.values]
    engines = sorted({_style_keys(t)[0] for t in shown})
    kinds = sorted({_style_keys(t)[1] for t in shown}, key=lambda k: (-k[0], k[1], k[2] != "fp32", k[2]))
    spare = iter(plt.get_cmap("tab10").colors)
    colour = {e: ENGINE_COLOURS.get(e) or next(spare) for e in engines}
    marker = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(kinds)}
    emulated = {_style_keys(t)[1] for t in shown if attrs_of(t).emulated}
    at = {t.number: objective_values(t, figures or {}, st.objectives) for t in shown}
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    retimed = [t for t in shown if at[t.number] != list(t.values)]
    for t in retimed:
        ax.annotate("", (at[t.number][-1], at[t.number][0]), (t.values[-1], t.values[0]),
                    arrowprops={"arrowstyle": "->", "color": "0.45", "lw": 0.8})  # fmt: skip
    busy = {t.number for t in shown if disturbed(t, figures or {})}
    for t in shown:
        engine, kind = _style_keys(t)
        ok = feasible(t)
        ax.scatter(
            at[t.number][-1],
            at[t.number][0],
            c=[colour[engine]],
            marker=marker[kind],
            alpha=1.0 if ok else 0.25,
            edgecolors="red" if t.number in busy else "k" if ok else "none",
            linewidths=1.6 if t.number in busy else 1.0,
            s=45,
            gid=f"trial {t.number}",
        )
    pts = sorted((at[t.number][-1], at[t.number][0]) for t in members if t.number in at)
    if pts:
        ax.plot(*zip(*pts), "k--", lw=1)
    if recommended is not None and recommended.number in at:
        x, y = at[recommended.number][-1], at[recommended.number][0]
        ax.scatter(x, y, marker="*", s=320, c="gold", edgecolors="k", zorder=5)
    xs = [v for t in shown for v in (at[t.number][-1], t.values[-1])]
    if xs and min(xs) > 0:
        ax.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)  # under a decade of range, the minor ticks are the only labels
        # minor labels only under a decade: across one or more they overlap (0.060.070.08 on a 0.009-0.3 axis)
        ax.xaxis.set_minor_formatter(plain if max(xs) / min(xs) < 10 else matplotlib.ticker.NullFormatter())
    log_note = ", log scale" if ax.get_xscale() == "log" else ""
    ax.set_xlabel(f"{x_obj.metric} ({getattr(x_obj.direction, 'value', x_obj.direction)}{log_note})")
    ax.set_ylabel(f"{y_obj.metric} ({getattr(y_obj.direction, 'value', y_obj.direction)})")
    busy_note = f"; red edge = timed on a busy machine ({len(busy)} of {len(shown)})" if busy else ""
    ax.set_title(f"study {st.name}: faded = infeasible{busy_note}")
    ax.grid(alpha=0.3)
    if shown:
        by_engine = [Line2D([], [], ls="", marker="o", color=colour[e], label=e) for e in engines]
        by_kind = [
            Line2D([], [], ls="", marker=marker[k], color="k", mfc="none", label=_kind_label(k, k in emulated))
            for k in kinds
        ]
        extra = [Line2D([], [], ls="--", color="k", lw=1, label="Pareto front (feasible)")] if pts else []
        if recommended is not None:
            extra.append(Line2D([], [], ls="", marker="*", ms=12, mfc="gold", mec="k", label="recommended"))
        if retimed:
            extra.append(
                Line2D(
                    [], [], color="0.45", lw=0.8, marker=">", ms=4, label="re-timed or re-anchored: first → reported"
                )
            )
        first = ax.legend(handles=by_engine, title="engine", fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.add_artist(first)
        ax.legend(
            handles=by_kind + extra,
            title="bits (int8 scheme), precision",
            fontsize=7,
            loc="lower left",
            bbox_to_anchor=(1.01, 0),
        )
    fig.tight_layout()
    return fig


def _kind_label(kind: tuple[int, str, str], emulated: bool) -> str:
    bits, scheme, precision = kind
    return f"{bits}-bit{' ' + scheme if scheme else ''}, {precision}" + (" (emulated)" if emulated else "")


def plot_png(trials, members, recommended, st: StudyConfig, figures: dict[str, Any] | None = None) -> bytes:
    """:func:`pareto_figure` as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(trials, members, recommended, st, figures)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
