"""``infersearch [run] key=value ...``: one Hydra job evaluates one configuration; ``-m`` runs a study.

The decorator does nothing but compose the config; :func:`run` is the plain,
testable function. In a multirun the job returns the result to the sweeper.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from infersearch.compose import CONFIG_MODULE, CONFIG_NAME, to_config
from infersearch.core.cache import atomic_write_text
from infersearch.core.errors import ConfigError, StepFailed
from infersearch.core.secrets import scrub
from infersearch.measure.anchor import DISTURBED_SINGLE
from infersearch.report.table import trial_table
from infersearch.trial import preload
from infersearch.trial.evaluate import check, trial_dict
from infersearch.trial.isolation import run_isolated

log = logging.getLogger("infersearch")


def run(
    cfg: DictConfig, output_dir: Path | None = None, early: bool = False, generation: bool | None = None
) -> dict[str, Any]:
    """``generation``: whether the model is a language model, when the caller has loaded its task already."""
    from infersearch.trial.baseline import load_task

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

    from infersearch.config import with_metric
    from infersearch.report.tracking import Tracker
    from infersearch.study.job import record_job
    from infersearch.study.space import search_space
    from infersearch.study.storage import open_study
    from infersearch.trial.baseline import load_task

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


@hydra.main(version_base="1.3", config_path=CONFIG_MODULE, config_name=CONFIG_NAME)
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
