"""Fixtures compose the real Hydra config, then shrink it (tiny model, short timing); studies run the real
CLI in a subprocess, quiet unless a test asserts on what the quiet settings leave out."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Small enough for 2 CPU cores, big enough that pruning and int8 change something.
TINY = [
    "model.width=16",
    "model.blocks=1",
    "model.epochs=10",
    "recover.epochs=2",
    "measure.warmup=2",
    "measure.min_repeats=10",
    "measure.min_time_s=0.05",
    "measure.rounds=2",
    # rounds of 0.05 s on a tiny model are too short for the machine-state gate to mean much: bound its wait
    "measure.max_wait_s=2",
    "prune.round_to=4",
    # The tiny model loses more than a point at the warm start's int8 + heavy-pruning corners, so studies
    # that test other behaviour start with the sampler; test_study's warm-start test turns it back on.
    "study.warm_start=false",
]


# A test study logs nothing to W&B, confirms nothing and exports nothing unless the test turns that on
# (tracking=wandb, study.confirm=true, study.export=true): conf/config.yaml keeps the full study as the default.
# Nor does it isolate its trials (isolate=true: a fork server that imports torch and the engines, then a process
# per trial, about 2 s a study here) unless the test is about what isolation does: crashes, the warnings and
# log lines relayed from trial processes, the full default study (the lifecycle, test_schedule's verdicts).
QUIET = ["tracking=disabled", "study.confirm=false", "study.export=false", "isolate=false"]


def quiet(args: tuple[str, ...] | list[str]) -> list[str]:
    """``args`` after the QUIET settings that ``args`` does not set itself."""
    given = {a.split("=", 1)[0] for a in args}
    return [*(q for q in QUIET if q.split("=", 1)[0] not in given), *args]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the session: the tiny baseline is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(cache_dir):
    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("config", overrides=[*TINY, f"cache_dir={cache_dir}", "study.name=test", *overrides])

    return make


def refusal(*overrides: str) -> tuple[int, str]:
    """Bad input, refused in process as the command line refuses it: the real Hydra compose, then the real
    validation (``infersearch.trial.check``) and the model's own (``load_task``). Returns the exit status the
    command line gives the error (Hydra's 1 for what it cannot compose, infersearch's 2 for a ConfigError;
    0: accepted) and the messages of the error and its causes, as Hydra prints them."""
    from infersearch.compose import to_config
    from infersearch.core.errors import ConfigError
    from infersearch.trial.baseline import load_task
    from infersearch.trial.evaluate import check

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=["study.name=test", *overrides])
        check(to_config(cfg), load_task(cfg.model).generation)  # as the command line: the model says its kind
    except Exception as exc:
        messages, cause = [], exc
        while cause is not None:
            messages.append(str(cause))
            cause = cause.__cause__
        return (2 if isinstance(exc, ConfigError) else 1), "\n".join(messages)
    return 0, ""


def run_cli(
    *args: str, module: str = "infersearch", cwd: Path = ROOT, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """The real command line, in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sweep_args(tmp_path: Path, cache_dir: Path, name: str, *args: str) -> list[str]:
    """The command line of a small, quiet study in ``tmp_path / name``."""
    out = tmp_path / name
    return ["-m", *TINY, f"cache_dir={cache_dir}", f"study.name={name}", f"study.output_dir={out}",
            "measure.min_repeats=6", "measure.min_time_s=0.02", *quiet(args)]  # fmt: skip


def sweep(tmp_path: Path, cache_dir: Path, name: str, *args: str, env: dict | None = None):
    return run_cli(*sweep_args(tmp_path, cache_dir, name, *args), env=env), tmp_path / name


def crashy_sweep(tmp_path: Path, cache_dir: Path, name: str, *args: str):
    """A small, quiet study of tests/crashy.py's model (trained in a fraction of a second), its space empty
    but for what ``args`` sweeps."""
    out = tmp_path / name
    proc = run_cli("--config-dir", str(ROOT / "tests" / "conf"), "-m", "model=crashy", "space=none",
                   *(o for o in TINY if not o.startswith("model.")), f"study.name={name}", f"study.output_dir={out}",
                   f"cache_dir={cache_dir}", "measure.min_time_s=0.02", *quiet(args))  # fmt: skip
    return proc, out


def load(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@dataclass
class Lifecycle:
    """One study through its life, for several test files to read (test_study, test_tracking): six trials
    of the default space with W&B (offline), confirmation, export and trial isolation on; a top-up to eight; the report
    rebuilt from storage alone; a basic-sweeper grid of four jobs into the same study. ``first`` and
    ``topped_up`` are copies of the study folder after those runs; ``out`` is the folder at the end."""

    name: str
    first: Path
    first_log: str
    topped_up: Path
    topped_up_log: str
    report: subprocess.CompletedProcess  # infersearch.report after pareto.json was deleted from ``out``
    rebuilt_pareto: str  # the pareto.json it wrote
    grid_log: str
    out: Path


def _ran(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def lifecycle(tmp_path_factory, cache_dir) -> Lifecycle:
    tmp = tmp_path_factory.mktemp("lifecycle")
    name, on = "s1", ("tracking=wandb", "study.confirm=true", "study.export=true", "isolate=true")
    proc, out = sweep(tmp, cache_dir, name, "study.n_trials=6", *on)
    first_log, first = _ran(proc), shutil.copytree(out, tmp / "first")
    # a top-up may recommend a faster variant up to max_drop less accurate: that exit 5 is test_schedule's subject
    proc, _ = sweep(tmp, cache_dir, name, "study.n_trials=8", *on)
    topped_up_log, topped_up = _ran(proc), shutil.copytree(out, tmp / "topped_up")
    (out / "pareto.json").unlink()
    report = run_cli("report", f"study.name={name}", f"study.output_dir={out}")  # the front door: infersearch report
    rebuilt = (out / "pareto.json").read_text() if report.returncode == 0 else ""
    grid = ("hydra/sweeper=basic", "prune.ratio=0,0.5", "quant.bits=32,8", "precision=fp32", "batch_size=4")
    grid_log = _ran(sweep(tmp, cache_dir, name, *grid, *on)[0])
    return Lifecycle(name, first, first_log, topped_up, topped_up_log, report, rebuilt, grid_log, out)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, cache_dir) -> tuple[Path, Any, Any]:
    """A tiny CNN exported through ONNX Runtime, some validation inputs (numpy) and the runner's outputs
    for them: what the serving and alerting tests serve."""
    from omegaconf import OmegaConf
    from optuna.trial import create_trial

    from infersearch.compose import to_config
    from infersearch.study.export import export_trial
    from infersearch.trial.evaluate import build

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, f"cache_dir={cache_dir}", "study.name=served", "engine=onnxruntime"])
    b = build(to_config(cfg), cfg.model)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    trial = create_trial(
        values=[1.0], user_attrs={"config": config, "params": {"engine": "onnxruntime"}, "env": {"engine": {}}}
    )
    out = export_trial(trial, tmp_path_factory.mktemp("export"))
    x = b.task.splits.val.take(5)
    return out, x.numpy(), b.runner(x).numpy()
