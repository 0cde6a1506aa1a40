"""Opening the study: storage URL, directions and sampler, the same for every entry point."""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler

from hydra_plugins.infersearch_sweeper.samplers import SAMPLERS
from infersearch.config import QUALITY, SPEED, StudyConfig
from infersearch.core.errors import ConfigError
from infersearch.core.optuna_compat import quiet_heartbeat_warnings
from infersearch.core.secrets import mask_url
from infersearch.study.sweep import make_sampler as sweep_sampler


def storage_url(st: StudyConfig) -> str:
    """The configured URL, or a SQLite file in the study's output directory."""
    if st.storage:
        return st.storage
    out = Path(st.output_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError("study.output_dir", f"{out} is not writable: {exc.strerror}") from exc
    return f"sqlite:///{out / 'study.db'}"


_STORAGES: dict[tuple[str, int, int], optuna.storages.BaseStorage] = {}


def make_storage(url: str, st: StudyConfig) -> optuna.storages.BaseStorage:
    """SQL URLs get Optuna's heartbeat: a trial whose worker died (SIGKILL, lost machine) is failed after
    ``grace_period`` and retried once. ``journal:<path>`` (or a path ending in .log) is a journal file
    for several processes on one machine; it has no heartbeat in Optuna. One storage per URL and process:
    a job run in the sweeper's process (Hydra's basic launcher) shares the sweeper's connections."""
    key = (url, st.heartbeat_interval, st.grace_period)
    if key not in _STORAGES:
        _STORAGES[key] = _storage(url, st)
    return _STORAGES[key]


def _storage(url: str, st: StudyConfig) -> optuna.storages.BaseStorage:
    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=st.heartbeat_interval,
        grace_period=st.grace_period,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
    )


# The default, TPE, is set on the tabular benchmarks of the default space (benchmarks/search_efficiency.py):
# multivariate, 5 start-up trials instead of 10 (the sweeper's warm-start seeds count among them) and 96
# candidates per proposal instead of 24. NSGA-II needs whole generations: a population that fits the budget.
TPE_STARTUP = 5
TPE_CANDIDATES = 96
OLD_NAMES = {"nsga2": "nsgaii"}  # study.sampler values of earlier releases


def _tuned(st: StudyConfig) -> dict[str, dict[str, Any]]:
    return {
        "tpe": {
            "multivariate": True,
            "n_startup_trials": TPE_STARTUP,
            "n_ei_candidates": TPE_CANDIDATES,
            "constant_liar": st.n_jobs > 1,
        },
        "nsgaii": {"population_size": max(4, min(50, st.n_trials // 4))},
    }


def directions(st: StudyConfig) -> list[str]:
    return [o.direction for o in st.objectives]


def make_sampler(st: StudyConfig, dists: Mapping[str, BaseDistribution] | None = None) -> BaseSampler:
    """``study.sampler`` names one of the samplers ``optuna5`` offers as ``hydra/sweeper/sampler=<name>``
    (hydra_plugins/infersearch_sweeper/samplers.py), built the same way (search/study/sweep.py), seeded by
    ``study.seed``, with infersearch's tuned settings."""
    name = OLD_NAMES.get(str(st.sampler), str(st.sampler))
    if name not in SAMPLERS:
        raise ConfigError("study.sampler", f"{name!r} is not one of {', '.join(SAMPLERS)}")
    config = SAMPLERS[name](seed=st.seed, **_tuned(st).get(name, {}))
    return sweep_sampler(config, dists or {}, "study.sampler")


def quiet_design_warnings() -> None:
    """Silence Optuna's warnings about what this project does on purpose. Set when a study opens, not at
    import: Hydra imports plugins inside ``warnings.catch_warnings``, which drops filters added then."""
    # The heartbeat, its retry callback and fail_stale_trials are marked experimental; this project relies on them.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    quiet_heartbeat_warnings()


def open_study(
    st: StudyConfig, dists: Mapping[str, BaseDistribution] | None = None, sampler: BaseSampler | None = None
) -> optuna.Study:
    """Create the study or continue it (``load_if_exists``); refuse a change of objectives."""
    quiet_design_warnings()
    url = storage_url(st)
    try:
        study = _create(st, url, sampler or make_sampler(st, dists))
    except ConfigError:
        raise
    except Exception as exc:  # unreachable database, bad URL: one line, no traceback
        raise ConfigError("study.storage", mask_url(f"cannot open {url}: {type(exc).__name__}: {exc}")) from exc
    have = [d.name.lower() for d in study.directions]
    if have != directions(st):
        raise ConfigError(
            "study.objectives",
            f"study {st.name!r} was created with directions {have}; use another study.name to change objectives",
        )
    names = [o.metric for o in st.objectives]
    # optuna-dashboard and `optuna best-trials` then name the objectives (placeholders are never stored)
    if study.metric_names != names and not {QUALITY, SPEED} & set(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental in some Optuna releases
            study.set_metric_names(names)
    return study


def _create(st: StudyConfig, url: str, sampler: BaseSampler, attempts: int = 4) -> optuna.Study:
    """Workers started together on a fresh database race to create Optuna's schema and the study;
    the losers retry after a short, jittered wait and then find them made."""

    def create() -> optuna.Study:
        storage = make_storage(url, st)
        try:  # an existing study is loaded without Optuna's "Using an existing study" line in every job
            return optuna.load_study(study_name=st.name, storage=storage, sampler=sampler)
        except KeyError:
            pass
        return optuna.create_study(
            study_name=st.name, storage=storage, directions=directions(st), sampler=sampler, load_if_exists=True
        )

    for _ in range(attempts - 1):
        try:
            return create()
        except Exception:  # noqa: BLE001 - the last attempt below raises what it meets
            time.sleep(0.5 + random.random())
    return create()
