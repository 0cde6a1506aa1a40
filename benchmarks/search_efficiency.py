"""Issue-10 benchmark 1: samplers replayed on a tabular benchmark of the default space.

    python benchmarks/search_efficiency.py record [model]     # every configuration of the default space, for real
    python benchmarks/search_efficiency.py replay [models]    # replay samplers on the recorded tables (minutes)

`record` runs the real study with the grid sampler over the whole default space on a model (digits_cnn by
default) and writes every trial (params, state, objective values, constraints, baseline, machine) to
results/tabular_<model>.json, the committed table. `replay` asks each sampler for trials on each table,
answers from the table with the sweeper's own rules (a refused combination is PRUNED and costs no budget,
a repeated one is reused and costs none), and reports the hypervolume of the feasible front found after
10%, 20% and 40% of the grid's size in measured trials, as a fraction of the full grid's front (median
and spread over seeds). Writes results/search_efficiency.json; its `default_sampler_hv_fraction_at_10pct`
is digits_cnn's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from infersearch.config import Config, Direction, ObjectiveConfig, SamplerName, StudyConfig
from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.report.table import table
from infersearch.study.pareto import hypervolume, non_dominated, reference_point
from infersearch.study.space import grid_size, search_space
from infersearch.study.storage import TPE_CANDIDATES, TPE_STARTUP, make_sampler
from infersearch.study.warm_start import warm_start_trials

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "tabular"
RESULT = ROOT / "benchmarks" / "results" / "search_efficiency.json"
DIRS = ["maximize", "minimize"]
SEEDS = range(50)  # the fraction is bimodal per seed (found the best corner or not): medians need many
GP_SEEDS = range(10)  # GP takes about 7 s per replay of 38 trials (the rest: well under 1 s)
FRACTIONS = (0.1, 0.2, 0.4)
OBJECTIVES = [
    ObjectiveConfig("accuracy", Direction.maximize),
    ObjectiveConfig("latency_ms_per_sample", Direction.minimize),
]
MAX_DROP = StudyConfig.max_drop  # accuracy, absolute
DEFAULT = "default (warm start + tuned TPE)"
DEFAULTS = {"precision": Config.precision.value}  # the configured value the sweeper gives warm_start_trials
KEEP = ("accuracy", "accuracy_drop", "latency_ms_per_sample", "latency_ms_p50", "speedup_vs_baseline", "emulated")


def default_space():
    import yaml

    space = yaml.safe_load((ROOT / "conf" / "space" / "default.yaml").read_text())
    return search_space(space, []).dists


def table_path(model: str) -> Path:
    return ROOT / "benchmarks" / "results" / f"tabular_{model}.json"


def record(model: str) -> None:
    dists = default_space()
    t0 = time.monotonic()
    out = OUT / model
    subprocess.run(
        [
            sys.executable,
            "-m",
            "infersearch",
            "-m",
            f"model={model}",
            f"study.name=tabular-{model}",
            f"study.output_dir={out}",
            "study.sampler=grid",
            f"study.n_trials={grid_size(dists)}",
            "tracking=disabled",
        ],
        cwd=ROOT,
        check=False,
    )
    study = optuna.load_study(study_name=f"tabular-{model}", storage=f"sqlite:///{out / 'study.db'}")
    rows = []
    for t in study.trials:
        if "reused_from" in t.user_attrs or t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        metrics = t.user_attrs.get("metrics") or {}
        rows.append(
            {
                "params": t.params,
                "state": t.state.name,
                "values": t.values,
                "constraints": dict(t.constraints),
                "rejected": bool(t.user_attrs.get("rejected")),
                "error": t.user_attrs.get("error"),
                "baseline": {k: v for k, v in (t.user_attrs.get("baseline") or {}).items() if k in KEEP},
                "metrics": {k: v for k, v in metrics.items() if k in KEEP},
            }
        )
    table_ = {
        "machine": {"cpu": capabilities("cpu").name, "threads": torch.get_num_threads(), "torch": torch.__version__},
        "wall_s": time.monotonic() - t0,
        "trials": rows,
    }
    atomic_write_text(table_path(model), json.dumps(table_, indent=1))
    print(f"{len(rows)} configurations recorded in {table_['wall_s']:.0f} s -> {table_path(model)}")


def load_table(model: str) -> dict[tuple, dict]:
    rows = json.loads(table_path(model).read_text())["trials"]
    return {tuple(sorted(r["params"].items())): {**r, "state": TrialState[r["state"]]} for r in rows}


def feasible_values(rows) -> list[list[float]]:
    return [
        r["values"]
        for r in rows
        if r["state"] == TrialState.COMPLETE and all(v <= 0 for v in r["constraints"].values())
    ]


def replay(sampler_name: str, seed: int, dists, table_, budget: int, settings: dict) -> list[list[float]]:
    """Feasible points found after each measured trial, following the sweeper's rules."""
    st = StudyConfig(
        name="replay",
        n_trials=budget,
        seed=seed,
        sampler=SamplerName(sampler_name),
        objectives=OBJECTIVES,
    )
    sampler = settings.get("sampler") or make_sampler(st, dists)
    study = optuna.create_study(directions=DIRS, sampler=sampler)
    for params in settings.get("warm", warm_start_trials(dists, DEFAULTS) if st.warm_start else []):
        study.enqueue_trial(params)
    seen, found, history, streak = set(), [], [], 0
    while len(history) < budget and streak < 100:  # the sweeper's max_reuse_streak
        streak += 1
        trial = study.ask(dists)
        key = tuple(sorted(trial.params.items()))
        row = table_.get(key)
        if row is not None and row["rejected"]:  # rejected early: its accuracy was measured, budget spent
            study.tell(trial, state=TrialState.PRUNED)
            if key not in seen:
                seen.add(key)
                history.append(list(found))
                streak = 0
            continue
        if row is None or row["state"] != TrialState.COMPLETE:
            study.tell(trial, state=TrialState.PRUNED)  # refused (or failed) up front: no budget
            continue
        for k, v in row["constraints"].items():
            trial.set_constraint(k, v)
        study.tell(trial, row["values"])
        if key in seen:
            continue  # reused: no budget
        seen.add(key)
        streak = 0
        if all(v <= 0 for v in row["constraints"].values()):
            found.append(row["values"])
        history.append(list(found))
        if len(seen) == len([r for r in table_.values() if r["state"] == TrialState.COMPLETE or r["rejected"]]):
            break
    while len(history) < budget:
        history.append(list(found))
    return history


def replay_model(model: str) -> dict:
    dists, table_ = default_space(), load_table(model)
    size = grid_size(dists)
    full = feasible_values(table_.values())
    # the study's own reference point, from the batch-1 fp32 baseline: the accuracy floor and 2x its latency
    b1 = next(r for k, r in table_.items() if dict(k)["batch_size"] == 1 and r["state"] == TrialState.COMPLETE)
    ref = reference_point(b1["baseline"], b1["metrics"], OBJECTIVES, "accuracy", MAX_DROP)
    best = hypervolume(full, DIRS, ref)
    budgets = {f: max(1, round(f * size)) for f in FRACTIONS}
    one_step = warm_start_trials(dists, DEFAULTS, prune_steps=1)
    warm = warm_start_trials(dists, DEFAULTS)

    def tpe(**kw):
        return lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True, **kw)

    quarter = tpe(n_startup_trials=TPE_STARTUP, n_ei_candidates=TPE_CANDIDATES, gamma=lambda n: min(n // 4 + 1, 25))
    contenders = {
        DEFAULT: ("tpe", {}),
        "warm start + TPE with a good group of a quarter": ("tpe", {"warm": warm, "factory": quarter}),
        "warm start at the highest prune ratio only + TPE": ("tpe", {"warm": one_step}),
        "TPE as the default, no warm start": ("tpe", {"warm": []}),
        "TPE, previous default (10 start-up)": ("tpe", {"warm": [], "factory": tpe(n_startup_trials=10)}),
        "TPE (Optuna defaults)": ("tpe", {"warm": [], "factory": lambda s: optuna.samplers.TPESampler(seed=s)}),
        "NSGA-II": ("nsga2", {"warm": []}),
        "GP": ("gp", {"warm": [], "seeds": GP_SEEDS}),
        "random": ("random", {"warm": []}),
        "warm start + random": ("random", {}),
    }
    rows, out = [], {"grid_size": size, "recorded": len(table_), "feasible": len(full), "reference": ref}
    complete = [r for r in table_.values() if r["values"] in full]
    out["front"] = [
        r["params"] for r, keep in zip(complete, non_dominated([r["values"] for r in complete], DIRS)) if keep
    ]
    out["results"] = {}
    for name, (sampler, extra) in contenders.items():
        per = {f: [] for f in FRACTIONS}
        for seed in extra.get("seeds", SEEDS):
            settings = {k: v for k, v in extra.items() if k not in ("factory", "seeds")}
            if "factory" in extra:
                settings["sampler"] = extra["factory"](seed)
            history = replay(sampler, seed, dists, table_, budgets[max(FRACTIONS)], settings)
            for f in FRACTIONS:
                per[f].append(hypervolume(history[budgets[f] - 1], DIRS, ref) / best)
        out["results"][name] = {
            f"{int(f * 100)}pct": {"median": statistics.median(v), "min": min(v), "max": max(v)} for f, v in per.items()
        }
        rows.append(
            [name, *(f"{statistics.median(per[f]):.3f} [{min(per[f]):.2f}-{max(per[f]):.2f}]" for f in FRACTIONS)]
        )
    print(
        f"{model}: grid {size} configurations ({len(full)} feasible); hypervolume fraction of the full front, "
        f"median [min-max] over {len(SEEDS)} seeds ({len(GP_SEEDS)} for GP)"
    )
    print(table(["sampler", *(f"after {int(f * 100)}% ({budgets[f]} trials)" for f in FRACTIONS)], rows))
    return out


def main_replay(models: list[str]) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = {"seeds": len(SEEDS), "models": {m: replay_model(m) for m in models}}
    out["default_sampler_hv_fraction_at_10pct"] = out["models"]["digits_cnn"]["results"][DEFAULT]["10pct"]["median"]
    atomic_write_text(RESULT, json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"]:
        record(sys.argv[2] if len(sys.argv) > 2 else "digits_cnn")
    else:
        main_replay(sys.argv[2:] or ["digits_cnn", "diagnosis_mlp"])
