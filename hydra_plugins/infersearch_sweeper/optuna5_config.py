"""``hydra/sweeper=optuna5``: an Optuna 5 sweeper for any Hydra app, in the schema of Hydra's own
hydra-optuna-sweeper (whose releases pin Optuna 2.10): a user of that plugin switches by changing
``hydra/sweeper=optuna`` to ``hydra/sweeper=optuna5``. Samplers are ``hydra/sweeper/sampler=<name>``."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SamplerConfig:
    _target_: str = MISSING
    seed: int | None = None  # every sampler takes one


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    sigma0: float | None = None
    use_separable_cma: bool = False


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class NSGAIIISamplerConfig(NSGAIISamplerConfig):
    _target_: str = "optuna.samplers.NSGAIIISampler"


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False


@dataclass
class GridSamplerConfig(SamplerConfig):
    """The grid is the search space itself, so the sweeper completes this partial."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True


SAMPLERS = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "nsgaiii": NSGAIIISamplerConfig,
    "gp": GPSamplerConfig,
    "qmc": QMCSamplerConfig,
    "grid": GridSamplerConfig,
}


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
    max_failure_rate: float = 0.0  # stop (raising the failed job's error) above this share of a batch
    params: dict[str, str] | None = None  # key: Hydra sweep grammar, e.g. x: interval(-5, 5)
    custom_search_space: str | None = None  # a function (cfg, trial) that suggests more parameters


ConfigStore.instance().store(group="hydra/sweeper", name="optuna5", node=Optuna5SweeperConf, provider="infersearch")
for _name, _node in SAMPLERS.items():
    ConfigStore.instance().store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="infersearch")
