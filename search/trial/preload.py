"""The study's trained baseline, loaded once by the fork server that trial processes are forked from
(infersearch.trial.isolation): each trial inherits it instead of loading it again (the task's imports and data,
the weights, two evaluations: about a second a trial)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from infersearch.core.cache import TensorCache
from infersearch.trial.baseline import Baseline, baseline_key, get_baseline, load_task

ENV = "INFERSEARCH_PRELOAD_MODEL"
_baselines: dict[str, Baseline] = {}  # by content key: a changed model config loads its own


def offer(model_cfg: Mapping[str, Any], cache_dir: str) -> None:
    """Name the model a fork server started from now on preloads (it reads this once, when it starts)."""
    os.environ[ENV] = json.dumps({"model": model_cfg, "cache_dir": str(cache_dir)}, default=str)


def baseline(model_cfg: Any, cache: TensorCache) -> Baseline:
    """The trained baseline of ``model_cfg``; the one this process already holds when its content key matches."""
    task = load_task(model_cfg)
    key = baseline_key(task)
    if key not in _baselines:
        _baselines[key] = get_baseline(task, cache)
    return _baselines[key]


def _preload() -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP's thread pool does not survive a fork: a trial's first parallel op would hang
    try:
        wanted = json.loads(spec)
        baseline(wanted["model"], TensorCache(wanted["cache_dir"]))
    except Exception:  # noqa: BLE001 - the fork server must start; each trial loads it and reports its error
        pass
    finally:
        torch.set_num_threads(threads)  # sets the count only; the pool starts in each trial's process


_preload()
