"""Issue-10 benchmark 1: samplers replayed on a tabular benchmark of the default space.

    python benchmarks/search_efficiency.py record      # measure every configuration of the default space, for real
    python benchmarks/search_efficiency.py replay      # replay samplers on the recorded table (seconds)

`record` runs the real study with the grid sampler over the whole default space on digits_cnn and writes
every trial (params, state, objective values, constraints, baseline, machine) to
results/tabular_digits_cnn.json, the committed table; `replay` asks each sampler for trials, answers
from the table with the sweeper's own rules
(a refused combination is PRUNED and costs no budget, a repeated one is reused and costs none), and reports
the hypervolume of the feasible front found after 10%, 20% and 40% of the grid's size in measured trials,
as a fraction of the full grid's front (median and spread over seeds). Writes results/search_efficiency.json.
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

from search.cache import atomic_write_text
from search.config import Direction, ObjectiveConfig, SamplerName, StudyConfig
from search.device import capabilities
from search.report_table import table
from search.study.pareto import hypervolume, reference_point
from search.study.space import build_space, grid_size
from search.study.storage import make_sampler

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "tabular"
RESULT = ROOT / "benchmarks" / "results" / "search_efficiency.json"
TABLE = ROOT / "benchmarks" / "results" / "tabular_digits_cnn.json"
DIRS = ["maximize", "minimize"]
SEEDS = range(50)  # the fraction is bimodal per seed (found the best corner or not): medians need many
FRACTIONS = (0.1, 0.2, 0.4)
OBJECTIVES = [
    ObjectiveConfig("accuracy", Direction.maximize),
    ObjectiveConfig("latency_ms_per_sample", Direction.minimize),
]
MAX_DROP = StudyConfig.max_accuracy_drop
KEEP = ("accuracy", "accuracy_drop", "latency_ms_per_sample", "latency_ms_p50", "speedup_vs_baseline", "emulated")


def default_space():
    import yaml

    space = yaml.safe_load((ROOT / "conf" / "space" / "default.yaml").read_text())
    return build_space(space, [])[0]


def record() -> None:
    dists = default_space()
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "search",
            "-m",
            "study.name=tabular",
            f"study.output_dir={OUT}",
            "study.sampler=grid",
            f"study.n_trials={grid_size(dists)}",
            "tracking=disabled",
        ],
        cwd=ROOT,
        check=False,
    )
    study = optuna.load_study(study_name="tabular", storage=f"sqlite:///{OUT / 'study.db'}")
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
    atomic_write_text(TABLE, json.dumps(table_, indent=1))
    print(f"{len(rows)} configurations recorded in {table_['wall_s']:.0f} s -> {TABLE}")


def load_table() -> dict[tuple, dict]:
    rows = json.loads(TABLE.read_text())["trials"]
    return {
        tuple(sorted(r["params"].items())): {**r, "state": TrialState[r["state"]]}
        for r in rows
    }


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


def main_replay() -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists, table_ = default_space(), load_table()
    size = grid_size(dists)
    full = feasible_values(table_.values())
    # the study's own reference point, from the batch-1 fp32 baseline: the accuracy floor and 2x its latency
    b1 = next(r for k, r in table_.items() if dict(k)["batch_size"] == 1 and r["state"] == TrialState.COMPLETE)
    ref = reference_point(b1["baseline"], b1["metrics"], OBJECTIVES, MAX_DROP)
    best = hypervolume(full, DIRS, ref)
    budgets = {f: max(1, round(f * size)) for f in FRACTIONS}
    contenders = {
        "default (tuned TPE)": ("tpe", {}),
        "TPE, previous default (multivariate, 10 start-up)": (
            "tpe",
            {"factory": lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True, n_startup_trials=10)},
        ),
        "tuned TPE with Optuna's gamma": (
            "tpe",
            {"factory": lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True, n_startup_trials=5)},
        ),
        "TPE (Optuna defaults)": ("tpe", {"factory": lambda s: optuna.samplers.TPESampler(seed=s)}),
        "NSGA-II": ("nsga2", {}),
        "GP": ("gp", {}),
        "random": ("random", {}),
    }
    rows, out = [], {"grid_size": size, "recorded": len(table_), "feasible": len(full), "reference": ref, "results": {}}
    for name, (sampler, extra) in contenders.items():
        per = {f: [] for f in FRACTIONS}
        for seed in SEEDS:
            settings = {"sampler": extra["factory"](seed)} if "factory" in extra else {}
            history = replay(sampler, seed, dists, table_, budgets[max(FRACTIONS)], settings)
            for f in FRACTIONS:
                per[f].append(hypervolume(history[budgets[f] - 1], DIRS, ref) / best)
        out["results"][name] = {
            f"{int(f * 100)}pct": {"median": statistics.median(v), "min": min(v), "max": max(v)} for f, v in per.items()
        }
        rows.append(
            [name, *(f"{statistics.median(per[f]):.3f} [{min(per[f]):.2f}-{max(per[f]):.2f}]" for f in FRACTIONS)]
        )
    out["default_sampler_hv_fraction_at_10pct"] = out["results"]["default (tuned TPE)"]["10pct"]["median"]
    print(
        f"grid {size} configurations ({len(full)} feasible); hypervolume fraction of the full front, "
        f"median [min-max] over {len(SEEDS)} seeds"
    )
    print(table(["sampler", *(f"after {int(f * 100)}% ({budgets[f]} trials)" for f in FRACTIONS)], rows))
    atomic_write_text(RESULT, json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    record() if sys.argv[1:] == ["record"] else main_replay()
