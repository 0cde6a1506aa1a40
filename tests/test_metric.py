"""Any metric, either direction: names, constraint, reference point; a tiny ROC AUC study end to end."""

from __future__ import annotations

import csv
import json

import pytest

from infersearch.config import Direction, DropKind, StudyConfig, with_metric
from infersearch.models.task import Metric
from infersearch.study.pareto import reference_point
from infersearch.study.record import constraint_values
from tests.conftest import TINY, run_cli


def perplexity_result(value: float, baseline: float) -> dict:
    metric = Metric(lambda p, t: 0.0, name="perplexity", direction="minimize")
    return {
        "metric": {"name": "perplexity", "direction": "minimize"},
        "metrics": {"perplexity": value, "perplexity_drop": metric.worse_by(baseline, value)},
        "baseline": {"perplexity": baseline},
    }


def test_a_minimised_metric_drops_when_it_rises():
    st = with_metric(StudyConfig(name="lm", max_drop=0.05, drop=DropKind.relative), "perplexity", "minimize")
    assert [(o.metric, o.direction) for o in st.objectives][0] == ("perplexity", Direction.minimize)
    assert constraint_values(perplexity_result(20.5, 20.0), st)["max_drop"] < 0  # 2.5% worse: allowed
    assert constraint_values(perplexity_result(21.5, 20.0), st)["max_drop"] > 0  # 7.5% worse: infeasible
    assert constraint_values(perplexity_result(15.0, 20.0), st)["max_drop"] < 0  # better
    base = {"perplexity": 20.0, "latency_ms_per_sample": 1.0}
    ref = reference_point(base, base, st.objectives, "perplexity", 1.0)
    assert ref == [21.0, 2.0]  # the constraint's bound, 2x the baseline's latency


def test_a_metric_needs_exactly_one_way_to_compute_it():
    with pytest.raises(ValueError, match="exactly one of fn and evaluate"):
        Metric(name="f1")
    with pytest.raises(ValueError, match="direction"):
        Metric(lambda p, t: 0.0, direction="up")


@pytest.mark.slow
def test_a_roc_auc_study_names_its_objective_and_columns_after_the_metric(tmp_path, cache_dir):
    out = tmp_path / "auc"
    proc = run_cli(
        "-m",
        "model=diagnosis_mlp_auc",
        "model.epochs=10",
        *(o for o in TINY if not o.startswith("model.")),
        f"cache_dir={cache_dir}",
        "study.name=auc",
        f"study.output_dir={out}",
        "study.n_trials=2",
        "study.confirm=false",
        "study.export=false",
        "tracking=disabled",
        "isolate=false",
        "study.max_drop=0.02",
        "space=none",
        "quant.bits=choice(32,8)",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert "roc_auc drop" in log and "acc" not in log.split("Pareto front")[1].split("\n")[1]
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"objective.roc_auc", "metric.roc_auc", "metric.test_roc_auc", "metric.roc_auc_drop"} <= set(rows[0])
    assert "constraint.max_drop" in rows[0] and not any("accuracy" in c for c in rows[0])
    rec = json.loads((out / "recommendation.json").read_text())
    assert set(rec["values"]) == {"roc_auc", "latency_ms_per_sample"}
    assert 0.9 < rec["values"]["roc_auc"] <= 1.0
    assert 0.5 < rec["baseline"]["roc_auc"] <= 1.0
    (out / "trials.csv").unlink()
    rebuilt = run_cli("study.name=auc", f"study.output_dir={out}", module="infersearch.report")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert "roc_auc drop" in rebuilt.stdout
    with open(out / "trials.csv") as f:
        assert "objective.roc_auc" in next(csv.reader(f))
