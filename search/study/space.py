"""Hydra's sweep grammar (choice, range, interval, tag(log, ...)) as Optuna distributions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from infersearch.errors import ConfigError


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"prune": {"ratio": "choice(...)"}}`` -> ``{"prune.ratio": "choice(...)"}``."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def parse_overrides(args: list[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(args)


def to_distribution(override: Override) -> BaseDistribution:
    key, value = override.get_key_element(), override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        if not value.list:
            raise ConfigError(key, "choice() needs at least one value")
        return CategoricalDistribution([_plain(v) for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if step is None or step <= 0 or log:
            raise ConfigError(key, "range() needs a positive step and no log tag (use tag(log, interval(...)))")
        n = math.ceil((stop - start) / step)  # Hydra's range excludes stop, like Python's
        if n < 1:
            raise ConfigError(key, f"range({start}, {stop}, {step}) is empty")
        high = start + (n - 1) * step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, high, step=step)
        return FloatDistribution(float(start), float(high), step=float(step))
    if isinstance(value, IntervalSweep):
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ConfigError(key, f"{override.input_line!r} is not a sweep (use choice, range or interval)")


def _plain(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def build_space(space_cfg: Mapping[str, Any], cli_args: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The search space and the fixed overrides every trial gets.

    Keys from the ``space`` config group, then the command line: a sweep on
    the command line adds or replaces a dimension, a plain value fixes the key.
    """
    lines = {k: f"{k}={v}" for k, v in flatten(space_cfg).items()}
    fixed: list[str] = []
    for ov in parse_overrides(cli_args):
        key = ov.get_key_element()
        if ov.is_sweep_override():
            lines[key] = ov.input_line
        else:
            lines.pop(key, None)
            fixed.append(ov.input_line)
    dists = {ov.get_key_element(): to_distribution(ov) for ov in parse_overrides(list(lines.values()))}
    return dists, fixed


def grid(dists: Mapping[str, BaseDistribution]) -> dict[str, list[Any]] | None:
    """Every value of a finite space, or None when a dimension is continuous."""
    values: dict[str, list[Any]] = {}
    for key, d in dists.items():
        if isinstance(d, CategoricalDistribution):
            values[key] = list(d.choices)
        elif isinstance(d, IntDistribution) and not d.log:
            values[key] = list(range(d.low, d.high + 1, d.step))
        elif isinstance(d, FloatDistribution) and d.step is not None:
            n = round((d.high - d.low) / d.step)
            values[key] = [round(d.low + i * d.step, 12) for i in range(n + 1)]
        else:
            return None
    return values


def grid_size(dists: Mapping[str, BaseDistribution]) -> int | None:
    g = grid(dists)
    return None if g is None else math.prod(len(v) for v in g.values())


def override_line(key: str, value: Any) -> str:
    if isinstance(value, str) and any(c in value for c in " ,()[]{}=:'\""):
        value = "'" + value.replace("'", "\\'") + "'"
    return f"{key}={value}"
