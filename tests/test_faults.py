"""Bad input and faults: each gives its clear message (or a recorded failure), a non-zero exit where it
ends the run, and leaves the study and its storage intact."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from tests.conftest import TINY, crashy_sweep, load, refusal, run_cli, sweep
from tests.test_library_errors import EXPORT_FAILED

# (overrides, exit code, text that must appear): single runs, refused before any work; checked in process
# (tests/conftest.py's refusal), and a few of them through the real command line
SINGLE = [
    ("prune.ratio=1.5", 2, "prune.ratio: 1.5 is out of range; allowed: 0 to 0.9"),
    ("prune.ratio=-0.1", 2, "prune.ratio: -0.1 is out of range"),
    ("precision=fp64", 1, "Invalid value 'fp64', expected one of [fp32, bf16, fp16, tf32]"),
    ("batch_size=0", 2, "batch_size: 0 must be a positive integer"),
    ("batch_size=abc", 1, "Value 'abc' of type 'str' could not be converted to Integer"),
    ("quant.bits=3", 2, "quant.bits: 3 is not supported; allowed: 32, 8, 4"),
    ("model=nope", 1, "Could not find 'model/nope'"),
    ("prnue.ratio=0.5", 1, "Could not override 'prnue.ratio'"),
    (
        "engine=tensorrt",
        1,
        "Invalid value 'tensorrt', expected one of [eager, compile, onnxruntime, openvino, onnxruntime_genai]",
    ),
    ("precision=bf16 quant.bits=8", 2, "precision: bf16"),  # no int8 with bf16, or no native bf16 here
    ("engine=compile quant.bits=8", 2, "engine: compile with quant.bits=8"),
    ("device=cuda", 2, "device: cuda was asked for but torch sees no CUDA device"),
    ("recover.distill=2", 2, "recover.distill: 2.0 is out of range; allowed: 0 to 1"),
    ("model._target_=infersearch.models.nowhere.task", 2, "model: infersearch.models.nowhere.task failed"),
    ("model.width=-3", 2, "digits_cnn: width and blocks must be >= 1"),
    ("measure.baseline=false", 2, "measure.anchor: needs measure.baseline=true"),
]


@pytest.mark.parametrize(("overrides", "code", "text"), SINGLE, ids=[s[0] for s in SINGLE])
def test_bad_single_run_input(overrides, code, text):
    status, message = refusal(*overrides.split())
    assert status == code, message
    assert text in message


# one of each kind: Hydra's (a type, a key), infersearch's (a range; a model refused inside the trial's process)
ON_THE_COMMAND_LINE = ["prune.ratio=1.5", "precision=fp64", "prnue.ratio=0.5", "model.width=-3"]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "code", "text"), [s for s in SINGLE if s[0] in ON_THE_COMMAND_LINE],
                         ids=ON_THE_COMMAND_LINE)  # fmt: skip
def test_bad_single_run_input_on_the_command_line(overrides, code, text, tmp_path):
    proc = run_cli(*overrides.split(), f"hydra.run.dir={tmp_path}", f"cache_dir={tmp_path}/cache")
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out[-1500:]
    assert text in out
    assert "Traceback" not in out
    assert not (tmp_path / "trial.json").exists()


FAST = ["engine=eager", "precision=fp32", "quant.bits=32", "prune.ratio=0.0"]


@pytest.mark.slow
def test_empty_search_space(tmp_path, cache_dir):
    proc, _ = sweep(tmp_path, cache_dir, "empty", "space=none", *FAST, "batch_size=1")
    assert proc.returncode == 2
    assert "space: the search space is empty" in proc.stdout + proc.stderr


@pytest.mark.slow
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


@pytest.mark.slow
def test_unwritable_outputs_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_cli("-m", *FAST, "batch_size=choice(1,2)", f"study.output_dir={blocker}/study")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2
    assert f"study.output_dir: {blocker}/study is not writable: Not a directory" in out
    assert "Traceback" not in out


# each fault is a config of tests/conf/fault/ (a segfault in native code, an allocation the allocator
# refuses, recovery diverging to a NaN loss, ONNX's exporter lacking an operator) -> its one-line error
FAULTS = {
    "segfault": "the trial's process died (killed by SIGSEGV) without a result",
    "oom": "DefaultCPUAllocator: can't allocate memory",
    "diverge": "DivergedError: training diverged: loss=nan",
    "library": EXPORT_FAILED,
}


def test_a_failure_mix_records_each_trials_one_line_error_and_the_study_goes_on(tmp_path, cache_dir):
    faults = ",".join([*FAULTS, "none"])
    proc, out = crashy_sweep(tmp_path, cache_dir, "faults", "study.n_trials=5", "study.sampler=grid",
                             "study.max_drop=null", f"+fault=choice({faults})", "isolate=true")  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    trials = {t.params["+fault"]: t for t in load(out, "faults").trials}  # the storage opens: intact
    assert set(trials) == {*FAULTS, "none"}
    assert trials["none"].state == TrialState.COMPLETE and trials["none"].user_attrs["metrics"]
    for fault, text in FAULTS.items():
        error = trials[fault].user_attrs["error"]
        assert trials[fault].state == TrialState.FAIL, fault
        assert text in error and "\n" not in error, error
    assert trials["library"].user_attrs["error"].startswith(EXPORT_FAILED)
    assert "5 trials, 1 complete, 4 failed" in log
    assert (out / "trials.csv").exists() and not (out / "wandb").exists()  # tracking=disabled writes nothing


@pytest.mark.slow
def test_max_failure_rate_stops_a_study_that_only_fails_and_it_exits_3(tmp_path, cache_dir):
    proc, out = crashy_sweep(tmp_path, cache_dir, "rate", "study.n_trials=8", "study.max_failure_rate=0.5",
                             "+fault=diverge", "batch_size=choice(1,2,3,4,5,6,7,8)")  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 3, log[-3000:]  # exit status: every trial failed
    # 3 failed of at least 5 judged: more than half of the first five, whatever the next two would do
    assert "3 of 3 trials failed (study.max_failure_rate=0.5): stopping the sweep" in log
    assert "every one of the 3 measured trials failed" in log
    trials = load(out, "rate").trials  # recorded, study intact
    assert len(trials) == 3 and all(t.state == TrialState.FAIL and t.user_attrs["measured"] for t in trials)


@pytest.mark.slow
def test_crash_with_isolation_off_takes_the_run_down_but_not_the_storage(tmp_path, cache_dir):
    proc, out = crashy_sweep(
        tmp_path, cache_dir, "nokill", "study.n_trials=2", "isolate=false", "model.crash=true", "batch_size=choice(1,2)"
    )
    assert proc.returncode != 0
    study = load(out, "nokill")  # the storage opens; the crashed trial awaits the heartbeat
    assert len(study.trials) == 1


SECRET = "pw-" + "9f8e7d6c5b4a"


@pytest.mark.slow
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
