"""``hydra/sweeper=optuna5``: an Optuna 5 sweeper for any Hydra app, in the schema of Hydra's own
hydra-optuna-sweeper (whose releases pin Optuna 2.10): a user of that plugin switches by changing
``hydra/sweeper=optuna`` to ``hydra/sweeper=optuna5``. Samplers are ``hydra/sweeper/sampler=<name>``."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from hydra_plugins.infersearch_sweeper.samplers import SamplerConfig


@dataclass
class Optuna5SweeperConf:
    _target_: str = "hydra_plugins.infersearch_sweeper.optuna5.Optuna5Sweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: SamplerConfig = MISSING
    # minimize | maximize, a list of them (one per returned value), or {metric: direction} for a task
    # that returns a dict of named metrics
    direction: Any = "minimize"
    storage: Any = None  # an Optuna storage URL; None: in memory
    study_name: str | None = None
    n_trials: int = 20  # trials this run adds to the study
    n_jobs: int = 2  # trials asked and launched together
    # stop, raising the first failed job's error, when more than this share of the trials this run launched
    # failed, judged over at least 5 (infersearch's meaning too: search/study/sweep.py); 0.0: at the first
    max_failure_rate: float = 0.0
    params: dict[str, str] | None = None  # key: Hydra sweep grammar, e.g. x: interval(-5, 5)
    custom_search_space: str | None = None  # a function (cfg, trial) that suggests more parameters


ConfigStore.instance().store(group="hydra/sweeper", name="optuna5", node=Optuna5SweeperConf, provider="infersearch")
