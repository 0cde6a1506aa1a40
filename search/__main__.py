"""``infersearch key=value ...``: one Hydra job evaluates one configuration.

The decorator does nothing but compose the config; :func:`run` is the plain,
testable function. In a multirun the job returns the result to the sweeper.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from infersearch import preload
from infersearch.cache import atomic_write_text
from infersearch.config import Config
from infersearch.errors import ConfigError, StepFailed
from infersearch.isolation import run_isolated
from infersearch.measure.anchor import DISTURBED_SINGLE
from infersearch.report_table import trial_table
from infersearch.secrets import scrub
from infersearch.trial import check, trial_dict

log = logging.getLogger("infersearch")


def to_config(cfg: DictConfig) -> Config:
    """The typed view of the composed config (Hydra has already checked keys and types)."""
    typed = OmegaConf.to_object(cfg)
    if not isinstance(typed, Config):
        typed = Config(**typed)  # pragma: no cover - composed without the ConfigStore schema
    return typed


def run(
    cfg: DictConfig, output_dir: Path | None = None, early: bool = False, generation: bool | None = None
) -> dict[str, Any]:
    """``generation``: whether the model is a language model, when the caller has loaded its task already."""
    from infersearch.baseline import load_task

    typed = to_config(cfg)
    if generation is None:
        generation = load_task(cfg.model).generation
    check(typed, generation)  # refusals stay one clear line, before any process is started
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    args = (trial_dict, typed, model_cfg, early)
    if typed.isolate:
        preload.offer(model_cfg, typed.cache_dir)  # the fork server, when it starts, loads this baseline once
    result = run_isolated(*args) if typed.isolate else trial_dict(*args[1:])
    result["config"] = scrub(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    if output_dir is not None:
        atomic_write_text(output_dir / "trial.json", json.dumps(result, indent=2, default=str))
    return result


def run_in_study(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """A multirun job: evaluate, then record the outcome in the study (search/study/job.py), whichever
    sweeper launched it. A job of the infersearch sweeper's (``study.trial`` set) may stop early, and
    that sweeper logs it to W&B; any other sweeper's job runs to the end and logs itself."""
    import optuna

    from infersearch.baseline import load_task
    from infersearch.config import with_metric
    from infersearch.study.job import record_job
    from infersearch.study.space import search_space
    from infersearch.study.storage import open_study
    from infersearch.tracking import Tracker

    typed = to_config(cfg)
    task = load_task(cfg.model)
    st = with_metric(typed.study, task.metric.name, task.metric.direction, task.generation)
    study = open_study(st, sampler=optuna.samplers.RandomSampler())  # the job tells, never samples
    dists = search_space(OmegaConf.to_container(cfg.space, resolve=True) or {}, []).dists
    held = st.trial is not None
    result, error = None, None
    try:
        result = run(cfg, output_dir, early=held, generation=task.generation)  # the task is loaded once a job
    except Exception as exc:
        error = exc
    frozen = record_job(study, st, cfg, dists, result, error, overrides)
    if not held:
        Tracker(typed.tracking, st).log_trial(frozen, False)
    if error is not None:
        raise error
    return result


@hydra.main(version_base="1.3", config_path="pkg://infersearch.conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN:
        return run_in_study(cfg, output_dir, OmegaConf.to_container(hc.overrides.task))  # unresolved: no secrets
    try:
        result = run(cfg, output_dir)
    except (ConfigError, StepFailed) as exc:  # one line, no traceback: the step and the library's message
        log.error("%s", exc)
        sys.exit(2)
    params = " ".join(f"{k}={v}" for k, v in result["params"].items())
    print(f"\n{cfg.model._target_.rsplit('.', 1)[0]}  {params}")
    if result["env"]["emulated"]:
        print("quantization is EMULATED (fake-quant): its latency is not a kernel speed-up")
    if result["metrics"].get("machine_disturbed"):
        print(f"latency DISTURBED: {DISTURBED_SINGLE}")
    print(trial_table(result))
    print(f"trial.json: {output_dir / 'trial.json'}")
    return result


def cli() -> None:
    """The ``infersearch`` console script. As with ``python -m infersearch``, the working directory comes
    first on the import path, so a ``_target_`` in the user's own project resolves; infersearch's own
    modules live under ``infersearch.``, which a project's ``models`` or ``search`` package cannot shadow."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if sys.argv[1:2] == ["report"]:  # every report file rebuilt from storage alone
        del sys.argv[1]
        from infersearch.report import main as report

        report()
        return
    if sys.argv[1:2] and sys.argv[1] in ("serve", "alerts", "serve-tune"):
        from infersearch.serve import cli as commands

        commands.main(sys.argv[1], sys.argv[2:])
        return
    main()


if __name__ == "__main__":
    cli()
