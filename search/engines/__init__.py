"""Inference engines: a registry from the ``engine`` config value to its adapter."""

from __future__ import annotations

from infersearch.engines.base import BuildContext, Engine, EngineMissing, Runner
from infersearch.engines.onnxruntime_engine import OnnxRuntimeEngine
from infersearch.engines.openvino_engine import OpenVinoEngine
from infersearch.engines.torch_engines import CompileEngine, EagerEngine
from infersearch.errors import ConfigError

ENGINES: dict[str, type[Engine]] = {e.name: e for e in (EagerEngine, CompileEngine, OnnxRuntimeEngine, OpenVinoEngine)}


def get_engine(name: str, **options) -> Engine:
    try:
        return ENGINES[name](**options)
    except KeyError:
        raise ConfigError("engine", f"{name!r} is not one of {', '.join(ENGINES)}") from None


__all__ = ["ENGINES", "BuildContext", "Engine", "EngineMissing", "Runner", "get_engine"]
