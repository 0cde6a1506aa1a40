"""Bad input and faults: each gives its clear message (or a recorded failure), a non-zero exit where it
ends the run, and leaves the study and its storage intact."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT, TINY, run_cli
from tests.test_study import load, sweep

# (overrides, exit code, text that must appear): single runs, refused before any work
SINGLE = [
    ("prune.ratio=1.5", 2, "prune.ratio: 1.5 is out of range; allowed: 0 to 0.9"),
    ("prune.ratio=-0.1", 2, "prune.ratio: -0.1 is out of range"),
    ("precision=fp64", 1, "Invalid value 'fp64', expected one of [fp32, bf16, fp16, tf32]"),
    ("batch_size=0", 2, "batch_size: 0 must be a positive integer"),
    ("batch_size=abc", 1, "Value 'abc' of type 'str' could not be converted to Integer"),
    ("quant.bits=3", 2, "quant.bits: 3 is not supported; allowed: 32, 8, 4"),
    ("model=nope", 1, "Could not find 'model/nope'"),
    ("prnue.ratio=0.5", 1, "Could not override 'prnue.ratio'"),
    ("engine=tensorrt", 1, "Invalid value 'tensorrt', expected one of [eager, compile, onnxruntime, openvino]"),
    ("precision=bf16 quant.bits=8", 2, "precision: bf16"),  # no int8 with bf16, or no native bf16 here
    ("engine=compile quant.bits=8", 2, "engine: compile with quant.bits=8"),
    ("device=cuda", 2, "device: cuda was asked for but torch sees no CUDA device"),
    ("recover.distill=2", 2, "recover.distill: 2.0 is out of range; allowed: 0 to 1"),
    ("model._target_=infersearch.models.nowhere.task", 2, "model: infersearch.models.nowhere.task failed"),
    ("model.width=-3", 2, "digits_cnn: width and blocks must be >= 1"),
    ("measure.baseline=false", 2, "measure.anchor: needs measure.baseline=true"),
]


@pytest.mark.parametrize(("overrides", "code", "text"), SINGLE, ids=[s[0] for s in SINGLE])
def test_bad_single_run_input(overrides, code, text, tmp_path):
    proc = run_cli(*overrides.split(), f"hydra.run.dir={tmp_path}", f"cache_dir={tmp_path}/cache")
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out[-1500:]
    assert text in out
    assert "Traceback" not in out
    assert not (tmp_path / "trial.json").exists()


FAST = ["engine=eager", "precision=fp32", "quant.bits=32", "prune.ratio=0.0"]


def test_empty_search_space(tmp_path, cache_dir):
    proc, _ = sweep(tmp_path, cache_dir, "empty", "space=none", *FAST, "batch_size=1")
    assert proc.returncode == 2
    assert "space: the search space is empty" in proc.stdout + proc.stderr


def test_impossible_constraints_end_with_no_feasible_configuration(tmp_path, cache_dir):
    proc, out = sweep(
        tmp_path,
        cache_dir,
        "nofeas",
        "study.n_trials=2",
        *FAST,
        "batch_size=choice(1,2)",
        "study.max_drop=-0.0",
        "study.latency_slo_ms=1e-9",
    )
    assert proc.returncode == 4
    assert "no feasible configuration" in proc.stdout + proc.stderr
    assert len(load(out, "nofeas").trials) == 2


def test_unreachable_storage(tmp_path):
    proc = run_cli(
        "-m",
        "study.storage=postgresql://nobody@127.0.0.1:9/none",
        *FAST,
        "batch_size=choice(1,2)",
        f"study.output_dir={tmp_path}",
    )
    assert proc.returncode == 2
    assert "study.storage: cannot open postgresql://nobody@127.0.0.1:9/none" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_unwritable_outputs_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_cli("-m", *FAST, "batch_size=choice(1,2)", f"study.output_dir={blocker}/study")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2
    assert f"study.output_dir: {blocker}/study is not writable: Not a directory" in out
    assert "Traceback" not in out


def crashy_sweep(tmp_path, cache_dir, name, *args):
    out = tmp_path / name
    proc = run_cli(
        "--config-dir",
        str(ROOT / "tests" / "conf"),
        "-m",
        "model=crashy",
        *FAST,
        f"study.name={name}",
        f"study.output_dir={out}",
        f"cache_dir={cache_dir}",
        "measure.min_time_s=0.02",
        "tracking=disabled",
        *args,
    )
    return proc, out


def test_trial_faults_are_recorded_and_the_study_goes_on(tmp_path, cache_dir):
    """A trial that segfaults and one that runs out of memory (NaN in recovery: test_study)."""
    proc, out = crashy_sweep(
        tmp_path,
        cache_dir,
        "faults",
        "study.n_trials=4",
        "study.sampler=grid",
        "study.max_drop=null",
        "model.crash=choice(true,false)",
        "batch_size=choice(4,1099511627776)",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "faults")
    failed = {
        (t.params["model.crash"], t.params["batch_size"]): t.user_attrs["error"]
        for t in study.trials
        if t.state == TrialState.FAIL
    }
    assert "killed by SIGSEGV" in failed[(True, 4)]
    assert "alloc" in failed[(False, 1099511627776)].lower()
    assert [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert "failed" in proc.stdout + proc.stderr
    optuna.load_study(study_name="faults", storage=f"sqlite:///{out / 'study.db'}")  # intact


def test_crash_with_isolation_off_takes_the_run_down_but_not_the_storage(tmp_path, cache_dir):
    proc, out = crashy_sweep(
        tmp_path, cache_dir, "nokill", "study.n_trials=2", "isolate=false", "model.crash=true", "batch_size=choice(1,2)"
    )
    assert proc.returncode != 0
    study = load(out, "nokill")  # the storage opens; the crashed trial awaits the heartbeat
    assert len(study.trials) == 1


SECRET = "pw-" + "9f8e7d6c5b4a"


def test_no_secret_in_any_file_a_run_writes(tmp_path, cache_dir):
    """The W&B key and a storage password given as ${oc.env:...} never land in outputs, logs or .hydra/."""
    env = {"WANDB_API_KEY": "k" * 40, "INFERSEARCH_DB_PASSWORD": SECRET}
    url = f"sqlite:///{tmp_path}/secret.db?password=${{oc.env:INFERSEARCH_DB_PASSWORD}}"
    proc = run_cli(
        "-m",
        *TINY,
        *FAST,
        f"cache_dir={cache_dir}",
        "batch_size=choice(1,2)",
        "study.n_trials=2",
        f"study.output_dir={tmp_path}/out",
        f"study.storage='{url}'",
        f"hydra.sweep.dir={tmp_path}/jobs",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in (proc.stdout, proc.stderr):
        assert SECRET not in text and "k" * 40 not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".db"]
    assert any(p.name == "config.yaml" for p in files)
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        assert b"k" * 40 not in data, path
