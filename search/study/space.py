"""The sweep grammar both sweepers read (infersearch's and ``optuna5``): Hydra's override grammar as Optuna
distributions, with one behaviour and one error (:class:`ConfigError`, naming the key and what is allowed).

- ``choice(a, b)`` or ``a,b``: the values (str, int, float or bool) as a categorical dimension.
- ``range(start, stop[, step])``: the values Hydra's own grid sweep runs (``stop`` excluded, step 1 when
  omitted, a negative step counting down to the same values) as an int or float dimension with that step.
- ``shuffle(...)``: the values as unordered categories (order means nothing to a sampler; the old
  hydra-optuna-sweeper read ``shuffle(range(...))`` so too).
- ``interval(low, high)``: a float dimension; ``int(interval(...))`` an int one.
- ``tag(log, interval(...))``: log scale; other tags are ignored, ``log`` on a choice or range is refused.
- A plain value fixes its key for every job, ``~key`` deletes it; a later line for a key replaces an earlier
  one (the command line after the config's space). A chosen value goes back to the job quoted where Hydra's
  grammar would read it as something else (:func:`override_line`).

Imports neither torch nor the search code: the ``optuna5`` sweeper reads it in any Hydra app."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from infersearch.core.errors import ConfigError

SWEEPS = "choice(...), range(start, stop[, step]), interval(low, high), tag(log, interval(...)) or shuffle(...)"


@dataclass
class Space:
    dists: dict[str, BaseDistribution]  # the searched keys
    fixed: dict[str, str]  # key -> its override line (a plain value or a deletion), given to every job as written

    def lines(self) -> list[str]:
        return list(self.fixed.values())


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


def search_space(config: Mapping[str, Any], arguments: list[str]) -> Space:
    """The space from a config's ``{key: grammar}`` (nested or dotted), then the command line's overrides."""
    lines = [f"{k}={v}" for k, v in flatten(config).items()]
    dists: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides([*lines, *arguments]):
        key = override.get_key_element()
        dists.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            dists[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return Space(dists, fixed)


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    key, value = override.get_key_element(), override.value()
    if isinstance(value, IntervalSweep):
        return _made(key, _interval, value, "log" in value.tags)
    if "log" in getattr(value, "tags", ()):
        raise ConfigError(key, f"tag(log, ...) takes interval(low, high), not {_text(override)}")
    if isinstance(value, ChoiceSweep):
        return _categorical(key, value.list)
    if isinstance(value, RangeSweep):
        values = _range_values(key, value)
        return _categorical(key, values) if value.shuffle else _made(key, _stepped, values, abs(value.step))
    raise ConfigError(key, f"{_text(override)} is not a sweep these sweepers read; allowed: {SWEEPS}")


def _text(override: Override) -> str:
    return override.input_line.partition("=")[2]


def _made(key: str, make: Any, *args: Any) -> BaseDistribution:
    """Optuna's own refusal (low above high, log of a non-positive low) as the key's one line."""
    try:
        return make(*args)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def _interval(value: IntervalSweep, log: bool) -> BaseDistribution:
    if isinstance(value.start, int) and isinstance(value.end, int):
        return IntDistribution(value.start, value.end, log=log)
    return FloatDistribution(float(value.start), float(value.end), log=log)


def _categorical(key: str, values: list[Any]) -> CategoricalDistribution:
    if not values:
        raise ConfigError(key, "choice() needs at least one value")
    for v in values:
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(key, f"a choice takes str, int, float or bool values, not {v!r}")
    return CategoricalDistribution(values)


def _range_values(key: str, value: RangeSweep) -> list[int | float]:
    """What Hydra's grid sweep runs for this range, in its order (a float step rounded as :func:`grid` does)."""
    start, stop, step = value.start, value.stop, value.step
    n = math.ceil((stop - start) / step)
    if n < 1:
        raise ConfigError(key, f"range({start}, {stop}, {step}) has no values; allowed: a stop past the start")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return [start + i * step for i in range(n)]
    return [round(start + i * step, 12) for i in range(n)]


def _stepped(values: list[int | float], step: int | float) -> BaseDistribution:
    low, high = min(values), max(values)
    if all(isinstance(v, int) for v in (*values, step)):
        return IntDistribution(low, high, step=step)
    return FloatDistribution(float(low), float(high), step=float(step))


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
    """``key=value`` for a job, the value quoted where Hydra would read it as something else (``a,b``)."""
    if isinstance(value, str) and any(c in value for c in " ,()[]{}=:'\""):
        value = "'" + value.replace("'", "\\'") + "'"
    return f"{key}={value}"
