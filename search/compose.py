"""The one way a command gets its config: Hydra's compose API over the search path the study's own
``@hydra.main`` builds (the packaged configs, with ``--config-dir`` in front of them, exactly as Hydra's
command line puts it), so ``infersearch serve ...`` sees the config the study ran with."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig, OmegaConf, open_dict

from infersearch.config import Config, validate
from infersearch.core.errors import ConfigError

CONFIG_MODULE = "pkg://infersearch.conf"
CONFIG_NAME = "config"
JOB_NAME = "infersearch"


def to_config(cfg: DictConfig) -> Config:
    """The typed view of the composed config (Hydra has already checked keys and types)."""
    typed = OmegaConf.to_object(cfg)
    if not isinstance(typed, Config):
        typed = Config(**typed)  # pragma: no cover - composed without the ConfigStore schema
    return typed


@contextmanager
def _hydra(config_dir: str | None) -> Iterator[None]:
    """Hydra initialised as ``@hydra.main(config_path=CONFIG_MODULE)`` initialises it for ``--config-dir``
    (hydra/_internal/utils.py, ``_run_hydra``); the global Hydra is restored afterwards, as
    ``hydra.initialize_config_*`` restore it."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    search_path = create_config_search_path(CONFIG_MODULE)
    if config_dir is not None:
        folder = os.path.abspath(config_dir)
        if not os.path.isdir(folder):
            raise ConfigError("--config-dir", f"{folder} is not a folder")
        search_path.prepend("command-line", f"file://{folder}", anchor=SearchPathQuery(provider="schema"))
    backup = get_gh_backup()
    try:
        Hydra.create_main_hydra2(task_name=JOB_NAME, config_search_path=search_path)
        yield
    finally:
        restore_gh_from_backup(backup)


def compose(overrides: list[str], config_dir: str | None = None) -> DictConfig:
    """The config a run with these overrides composes, without its ``hydra:`` node; the node itself stays
    available as ``HydraConfig.get()`` (``study.name`` defaults to the model's choice, a ``hydra:`` key)."""
    from hydra import compose as hydra_compose
    from hydra.core.hydra_config import HydraConfig

    with _hydra(config_dir):
        cfg = hydra_compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_config(overrides: list[str], config_dir: str | None = None) -> Config:
    """The typed, validated config the study would run with."""
    cfg = to_config(compose(overrides, config_dir))
    validate(cfg)
    return cfg
