"""Pareto confirmation: before recommending, re-measure the front's latencies side by side.

Each front member was timed once, at its own moment, on a machine whose speed drifts. Here all
members are rebuilt from their stored configs (cached steps are reused) and
timed in the same interleaved rounds, with more repeats, per batch size. The confirmed figures are
stored in the study (``confirmation`` user attribute); the report recomputes the front with them and
says which members moved off it.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from infersearch.measure.anchor import anchored_metrics, state_gate
from infersearch.measure.latency import measure_interleaved
from infersearch.study.pareto import front
from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)
BASELINE = "baseline"  # not a trial number


def confirm_front(study: optuna.Study, rounds_factor: int = 2, time_factor: float = 3.0) -> dict[str, Any]:
    from infersearch.trial import _batch, rebuild

    members = front(study)
    by_batch: dict[int, list[FrozenTrial]] = {}
    for t in members:
        by_batch.setdefault(int(t.user_attrs["params"]["batch_size"]), []).append(t)
    confirmed: dict[str, Any] = {}
    for bs, trials in by_batch.items():
        fns, cfg, built = {}, None, None
        for t in trials:
            cfg, built = rebuild(dict(t.user_attrs["config"]))
            native = built.runner.prepare(_batch(built.task, bs))
            fns[str(t.number)] = (lambda run, x: lambda: run(x))(built.runner.run, native)
        m = cfg.measure
        device = trials[0].user_attrs["env"]["device"]
        anchor = trials[0].user_attrs["metrics"].get("anchor_ms") if m.anchor else None
        if anchor:  # the baseline joins the rounds, so confirmed figures are anchored like the first ones
            reference, x_ref = built.base.fresh().to(device), _batch(built.task, bs).to(device)
            fns[BASELINE] = lambda: reference(x_ref)
        stats = measure_interleaved(
            fns,
            bs,
            device,
            m.warmup,
            m.min_repeats * rounds_factor,
            m.min_time_s * time_factor,
            m.rounds * rounds_factor,
            state_gate(anchor, m.max_state) if anchor else None,
            m.max_wait_s,
        )
        for t in trials:
            own = stats[str(t.number)]
            metrics = anchored_metrics(own, stats[BASELINE], anchor) if anchor else own.as_metrics()
            before = t.user_attrs["metrics"]["latency_ms_per_sample"]
            confirmed[str(t.number)] = metrics | {"ratio_to_first": metrics["latency_ms_per_sample"] / before}
    study.set_user_attr("confirmation", confirmed)
    moved = [n for n, c in confirmed.items() if abs(c["ratio_to_first"] - 1) > 0.1]
    log.info(
        "confirmed %d front members side by side; latency moved by more than 10%% for: %s",
        len(confirmed),
        ", ".join(moved) or "none",
    )
    return confirmed
