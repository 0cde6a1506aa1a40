"""Fixtures compose the real Hydra config, then shrink it (tiny model, short timing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def exported(tmp_path_factory, cache_dir) -> tuple[Path, Any, Any]:
    """A tiny CNN exported through ONNX Runtime, some validation inputs (numpy) and the runner's outputs
    for them: what the serving and alerting tests serve."""
    from omegaconf import OmegaConf
    from optuna.trial import create_trial

    from infersearch.__main__ import to_config
    from infersearch.study.export import export_trial
    from infersearch.trial import build

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
