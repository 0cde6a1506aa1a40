"""Inference engines: a registry from the ``engine`` config value to its adapter, and from an artifact's
format to how it is loaded.

Every module of this package is imported here; each :class:`Engine` subclass registers itself under its
``name`` and each module registers the :class:`ArtifactFormat` its runners save. A new engine is one
module here plus its value in :class:`~infersearch.config.EngineName`.
"""

from __future__ import annotations

import importlib
import pkgutil

from infersearch.config import EngineName
from infersearch.core.errors import ConfigError
from infersearch.engines.base import FORMATS, ArtifactFormat, BuildContext, Engine, EngineMissing, Runner, Saved


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()

ENGINES: dict[str, type[Engine]] = {n.value: Engine.registry[n] for n in EngineName if n in Engine.registry}
if unregistered := sorted(set(EngineName) - set(ENGINES)):
    raise ImportError(f"engine {', '.join(unregistered)} has no Engine subclass in infersearch.engines")


def get_engine(name: str, **options) -> Engine:
    try:
        return ENGINES[name](**options)
    except KeyError:
        raise ConfigError("engine", f"{name!r} is not one of {', '.join(ENGINES)}") from None


__all__ = [
    "ENGINES",
    "FORMATS",
    "ArtifactFormat",
    "BuildContext",
    "Engine",
    "EngineMissing",
    "Runner",
    "Saved",
    "get_engine",
]
