"""Scheduled runs: exit statuses, time budget, a changed model refused. Every test runs studies: slow. (Every
trial failing exits 3: test_faults.py's max_failure_rate test.)"""

from __future__ import annotations

import optuna
import pytest

from infersearch.config import AlertsConfig
from infersearch.serve.alerts import rules as alert_rules
from infersearch.serve.alerts import write_rules
from tests.conftest import load, run_cli, sweep, sweep_args
from tests.prom import rules_test

pytestmark = pytest.mark.slow

FAST = ["engine=eager", "precision=fp32", "quant.bits=32", "batch_size=choice(1,4)", "prune.ratio=0.0"]


# An engine made slower on purpose: every ONNX Runtime call does its work twenty times (a bad release). Not a
# sleep: idle cores between calls slow the baseline's next rounds, and the machine-state gate rightly refuses them.
SLOW_ORT = """
import onnxruntime

_run = onnxruntime.InferenceSession.run


def run(self, *args, **kwargs):
    for _ in range(19):
        _run(self, *args, **kwargs)
    return _run(self, *args, **kwargs)


onnxruntime.InferenceSession.run = run
"""
# The tiny model's 15 ms rounds often cross the machine-state gate, and a run the gate calls disturbed is not
# compared: this test is about the verdict, so the gate is opened wide, for the baseline's state and for other
# programs' CPU (with another program on 0.9 of the 2 cores, the slowed run's previous recommendation stayed
# disturbed, was not compared, and the run exited 0: a full run of this suite at 10:47 today).
# The previous recommendation is compared by re-timing it beside this run's: the confirmation is on, and this
# test runs the full study (export, W&B, isolated trials) as before the tests' quiet defaults. On this branch's
# base it is flaky on 2 cores: the slowed run's confirmation moves trial 0 off the front and the batch-1 trial is
# recommended on its unconfirmed first measurement, within the margin (exit 0); main's "recommendations only from
# confirmed figures" addresses that.
ORT = ["engine=onnxruntime", "precision=fp32", "quant.bits=32", "batch_size=choice(1,4)", "prune.ratio=0.0",
       "measure.max_state=10", "measure.max_foreign_cores=64",
       "study.confirm=true", "study.export=true", "tracking=wandb", "isolate=true"]  # fmt: skip


def test_a_slower_engine_exits_5_and_a_changed_rule_is_reported_and_compared_under_it(tmp_path, cache_dir):
    proc, out = sweep(tmp_path, cache_dir, "sched", "study.n_trials=2", *ORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (first,) = load(out, "sched").user_attrs["recommendations"]
    assert first["settings"]["rule"] == "fastest" and first["spread"] >= 0
    ok_textfile = (out / "infersearch_sched.prom").read_text()
    assert 'infersearch_sweep_last_exit_status{study="sched"} 0.0' in ok_textfile
    proc, _ = sweep(tmp_path, cache_dir, "sched", "study.n_trials=2", *ORT, "study.recommend=most_accurate",
                    "study.max_drop=0.05")  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rule changed since the previous run (fastest -> most_accurate): compared under the new rule" in text
    assert "constraints changed since the previous run" in text
    assert "against the previous run's recommendation: trial" in text and "deterministic, no margin" in text
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_ORT)
    proc = run_cli(*sweep_args(tmp_path, cache_dir, "sched", "study.n_trials=2", *ORT), env={"PYTHONPATH": str(slow)})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 5, text[-3000:]
    assert "the recommendation got worse than the previous run's: trial" in text
    assert "against the previous run's trial" in text and "engine=onnxruntime" in text
    assert "margin" in text and "the previous one re-timed now" in text
    stored = load(out, "sched").user_attrs["recommendations"]
    assert (
        len(stored) == 3
        and stored[-1]["values"]["latency_ms_per_sample"] > 2 * first["values"]["latency_ms_per_sample"]
    )
    regressed = (out / "infersearch_sched.prom").read_text()
    assert 'infersearch_sweep_last_exit_status{study="sched"} 5.0' in regressed
    latency = stored[-1]["values"]["latency_ms_per_sample"] / 1000
    assert f'infersearch_sweep_recommended_latency_seconds_per_sample{{study="sched"}} {latency!r}' in regressed
    _regression_alert_fires_on(regressed, ok_textfile, tmp_path)


def _regression_alert_fires_on(regressed: str, ok: str, folder) -> None:
    """promtool evaluates the alert rules on the series of each textfile: exit 5 pages, exit 0 does not."""
    rules = write_rules(folder / "alerts.yml", AlertsConfig(), "sched", 10.0)
    (rule,) = [r for g in alert_rules(AlertsConfig(), "sched", 10.0)["groups"] for r in g["rules"]
               if r["alert"] == "InfersearchSweepRegressed"]  # fmt: skip
    expected = [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}]
    fired = rules_test(rules, regressed, "InfersearchSweepRegressed", expected)
    assert fired.returncode == 0, fired.stdout + fired.stderr
    quiet = rules_test(rules, ok, "InfersearchSweepRegressed", [])
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr


def test_an_unchanged_study_topped_up_five_times_never_exits_5(tmp_path, cache_dir):
    space = ["engine=choice(eager,onnxruntime)", "precision=fp32", "quant.bits=32", "batch_size=choice(1,4)",
             "prune.ratio=choice(0.0,0.5)", "study.max_drop=null", "study.confirm=true", "tracking=wandb",
             "isolate=true"]  # fmt: skip
    codes, picks = [], []
    for n in range(2, 8):  # a first run, then five top-ups of one trial each; W&B logging on (offline)
        proc, out = sweep(tmp_path, cache_dir, "topup", f"study.n_trials={n}", *space)
        codes.append(proc.returncode)
        assert proc.returncode != 5, (proc.stdout + proc.stderr)[-3000:]
        picks.append(load(out, "topup").user_attrs["recommendations"][-1]["trial"])
    assert codes == [0] * 6, codes
    assert len(load(out, "topup").user_attrs["recommendations"]) == 6
    assert list((out / "wandb").glob("offline-run-*"))  # tracking was on


def test_time_budget_stops_starting_trials(tmp_path, cache_dir):
    proc, out = sweep(tmp_path, cache_dir, "budget", "study.n_trials=50", "study.timeout=0.001", *FAST)
    assert "study.timeout" in proc.stdout + proc.stderr
    measured = [t for t in load(out, "budget").trials if t.user_attrs.get("measured")]
    assert len(measured) <= 1
    # nothing measured ends as "no feasible configuration" (4); the one trial that may start is feasible (0)
    assert proc.returncode == (0 if measured else 4), (proc.stdout + proc.stderr)[-3000:]


def test_a_changed_model_is_refused_not_mixed_in(tmp_path, cache_dir):
    proc, out = sweep(tmp_path, cache_dir, "ckpt", "study.n_trials=1", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc, _ = sweep(tmp_path, cache_dir, "ckpt", "study.n_trials=2", *FAST, "model.width=24")
    assert proc.returncode == 2
    assert "holds results for another model or checkpoint" in proc.stderr + proc.stdout
    study = optuna.load_study(study_name="ckpt", storage=f"sqlite:///{out / 'study.db'}")
    assert sum(bool(t.user_attrs.get("measured")) for t in study.trials) == 1
