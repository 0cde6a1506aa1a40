"""The samplers both sweepers choose from, by the same names: ``hydra/sweeper/sampler=<name>`` for ``optuna5``
(a config group, as hydra-optuna-sweeper's), ``study.sampler=<name>`` for infersearch (its study settings live
in the job config). Each is Optuna's class (``_target_``) and its settings; the sweeper instantiates it and
gives the grid sampler its grid, the space's (search/study/sweep.py). Imports nothing but Hydra: Hydra's
plugin scan imports it for every app."""

from dataclasses import dataclass

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
    constant_liar: bool = False  # running trials count as bad guesses: keeps a batch of n_jobs apart


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
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class NSGAIIISamplerConfig(NSGAIISamplerConfig):
    _target_: str = "optuna.samplers.NSGAIIISampler"


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


for _name, _node in SAMPLERS.items():
    ConfigStore.instance().store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="infersearch")
