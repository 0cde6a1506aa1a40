"""The sweeper Hydra finds. Hydra imports every plugin module of every installed package for every app,
so this one imports nothing but Hydra: the implementation (_impl.py, torch and the search code behind
it) loads when a sweep with this sweeper starts."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class InfersearchSweeper(Sweeper):
    def __init__(self, max_reuse_streak: int = 100) -> None:
        from hydra_plugins.infersearch_sweeper._impl import InfersearchSweeperImpl

        self.impl = InfersearchSweeperImpl(max_reuse_streak)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.impl.sweep(arguments)
