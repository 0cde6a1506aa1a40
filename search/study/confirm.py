"""Pareto confirmation: before recommending, re-measure the front's latencies side by side.

Each front member was timed once, at its own moment, on a machine whose speed drifts. Here all
members, and the previous run's recommendation, are rebuilt from their stored configs (cached steps
are reused) and timed in the same interleaved rounds, with more repeats, per batch size, under this
run's measurement settings. The rounds run in a child process of their own (as trials do): nothing
that lives in the sweeper's process (W&B's service threads and ``wandb-core``, Optuna's heartbeat,
storage connections) shares the interpreter that times them. The confirmed figures, with each
member's per-round ratios to the baseline (the spread the regression check takes its margin from),
are stored in the study (``confirmation`` user attribute; ``confirmation_context`` says which trial
was the previous recommendation and under which settings it was all timed).
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
from dataclasses import asdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from infersearch.config import MeasureConfig
from infersearch.measure.anchor import Anchor, AnchorBook, anchored_metrics, log_spread, time_anchored
from infersearch.measure.generation import decode_units
from infersearch.measure.latency import LatencyStats, Timing, measure_interleaved
from infersearch.study.attrs import attrs_of
from infersearch.study.figures import reported, trusted
from infersearch.study.pareto import confirmed_front

log = logging.getLogger(__name__)
BASELINE = "baseline"  # not a trial number
# the reported figures: the anchor is re-taken when the confirmation's clean rounds see the machine more
# than 5% from it (a trial's gate, measure.max_state, tolerates 20%: measured, a 0.86 state left the
# recommendation 17% slower than its export timed alone moments later)
CONFIRM_BAND = 1.05
MAX_ROUNDS = 3  # confirmation rounds: the front, then newcomers and members timed while the machine was busy


def _members(study: optuna.Study, objectives: list[Any], previous: int | None) -> list[FrozenTrial]:
    """The front at the figures the study reports now (first measurements, on the current anchors), and the
    previous run's recommendation."""
    members = confirmed_front(study, reported(study), objectives)[0]
    if previous is not None and previous not in {t.number for t in members}:
        trials = study.get_trials(deepcopy=False)
        if previous < len(trials) and trials[previous].state == TrialState.COMPLETE:
            members.append(trials[previous])
    return members


def measure_members(configs: dict[str, dict[str, Any]], measure: dict[str, Any], cache_dir: str) -> dict[str, Any]:
    """Rebuild each stored config and time them all side by side, per batch size (run in a child)."""
    import torch

    from infersearch.core.cache import TensorCache
    from infersearch.core.device import capabilities, resolve
    from infersearch.trial.evaluate import baseline_call, batch_of, rebuild

    by_batch: dict[int, dict[str, dict[str, Any]]] = {}
    for number, stored in configs.items():
        by_batch.setdefault(int(stored["batch_size"]), {})[number] = stored
    out: dict[str, Any] = {"members": {}, "baseline_round_p50_ms": {}}
    for bs, group in by_batch.items():
        fns, anchor = {}, None
        for number, stored in group.items():
            cfg, built = rebuild(stored | {"measure": measure, "cache_dir": cache_dir})
            native = built.runner.prepare(batch_of(built.task, bs))
            fns[number] = (lambda run, x: lambda: run(x))(built.runner.run, native)
        m, device = cfg.measure, resolve(cfg.device)
        timing = Timing.of(m).for_confirmation()  # why longer, and by how much: search/measure/latency.py
        if m.anchor:  # the baseline joins the rounds, so confirmed figures are anchored like the first ones
            fns[BASELINE] = baseline_call(built.base, batch_of(built.task, bs), device, cfg.gen)[1]
            threads, cache = torch.get_num_threads(), TensorCache(cache_dir)
            book = AnchorBook(built.base.key, device, capabilities(device).name, threads, m, cache)
            stats, anchor = time_anchored(fns, bs, timing, device, book, CONFIRM_BAND)
        else:
            stats = measure_interleaved(fns, bs, timing, device)
        base = stats.get(BASELINE)
        for number in group:
            confirmed = _confirmed(stats[number], base, anchor)
            out["members"][number] = confirmed | (decode_units(confirmed) if built.task.generation else {})
        if base is not None:
            out["baseline_round_p50_ms"][str(bs)] = list(base.round_p50_ms)
    return out


def _confirmed(own: LatencyStats, base: LatencyStats | None, anchor: Anchor | None) -> dict[str, Any]:
    metrics = anchored_metrics(own, base, anchor) if anchor and base is not None else own.as_metrics()
    if base is not None:
        ratios = [v / b for v, b in zip(own.round_p50_ms, base.round_p50_ms)]
    else:  # no baseline in the rounds: the spread of the raw round medians
        mid = statistics.median(own.round_p50_ms)
        ratios = [v / mid for v in own.round_p50_ms]
    return metrics | {"round_p50_ms": list(own.round_p50_ms), "round_ratios": ratios, "spread": log_spread(ratios)}


def confirm_front(
    study: optuna.Study,
    objectives: list[Any],
    measure: MeasureConfig,
    cache_dir: str,
    previous: int | None,
    isolate: bool = True,
) -> dict[str, Any]:
    """Time the front and the previous recommendation side by side; then, while the front at the confirmed
    figures holds members without an undisturbed confirmed figure (newcomers, or members timed while the
    machine stayed busy), time those, up to ``MAX_ROUNDS`` rounds. Store and return the figures."""
    from infersearch.trial.isolation import run_isolated

    plain = asdict(measure)
    confirmed: dict[str, Any] = {}
    todo, baselines, rounds = _members(study, objectives, previous), {}, 0
    while todo and rounds < MAX_ROUNDS:
        rounds += 1
        configs = {str(t.number): dict(attrs_of(t).config) for t in todo}
        args = (configs, plain, cache_dir)
        result = run_isolated(measure_members, *args) if isolate else measure_members(*args)
        for t in todo:
            metrics = result["members"][str(t.number)]
            before = attrs_of(t).metrics["latency_ms_per_sample"]
            confirmed[str(t.number)] = metrics | {"ratio_to_first": metrics["latency_ms_per_sample"] / before}
        baselines |= result["baseline_round_p50_ms"]
        study.set_user_attr("confirmation", confirmed)
        figures = reported(study)
        todo = [t for t in confirmed_front(study, figures, objectives)[0] if not trusted(t, figures, confirmed)]
    study.set_user_attr(
        "confirmation_context",
        {
            "previous_recommendation": previous if previous is not None and str(previous) in confirmed else None,
            "baseline_round_p50_ms": baselines,
            "measure": plain,
            "rounds": rounds,
            "time": dt.datetime.now(dt.timezone.utc).isoformat(),
        },
    )
    moved = [n for n, c in confirmed.items() if abs(c["ratio_to_first"] - 1) > 0.1]
    log.info(
        "confirmed %d trials side by side in %d round(s) (the front%s, then its newcomers); latency moved by more "
        "than 10%% for: %s",
        len(confirmed),
        rounds,
        f" and the previous recommendation, trial {previous}" if str(previous) in confirmed else "",
        ", ".join(moved) or "none",
    )
    if todo:
        log.warning(
            "front members without an undisturbed confirmed figure after %d rounds (the machine stayed busy): "
            "%s; one is recommended only when no feasible trial has such a figure, and then marked disturbed",
            rounds,
            ", ".join(str(t.number) for t in todo),
        )
    return confirmed
