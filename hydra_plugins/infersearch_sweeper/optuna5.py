"""The ``optuna5`` sweeper Hydra finds: imports nothing but Hydra (the plugin scan imports every plugin
module for every app); the loop (_optuna5.py) loads when a sweep with it starts."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class Optuna5Sweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.infersearch_sweeper._optuna5 import Optuna5SweeperImpl

        self.impl = Optuna5SweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.impl.sweep(arguments)
