"""The first trials of a fresh study: the fast end of the front, before the sampler has any data.

Per-sample latency falls as the batch grows, as the bit-width falls and as channels are pruned, on every
engine; which engine is fastest cannot be told in advance. So the fast end of the front lies at the
largest batch and the lowest bit-width, at a high pruning ratio, on some engine. A random start lands
there rarely (it is one corner per engine of a product space) and TPE's first proposals only know
what the random start found. Seeding that corner once per engine, at the highest and a middle pruning
ratio, gives the sampler the fast end of the front in a handful of trials; the rest of the search fills
in the accurate end. Chosen on the tabular benchmark (benchmarks/search_efficiency.py); `study.warm_start=false`
leaves the first trials to the sampler alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from infersearch.study.space import grid

# Where per-sample latency is lowest, for the dimensions whose direction is known on every engine.
FAST_END: dict[str, Callable[[list[Any]], Any]] = {"batch_size": max, "quant.bits": min}
PRUNE = "prune.ratio"  # seeded at its highest value, then at its middle one
EACH = ("engine",)  # no known order: one seed per value


def warm_start_trials(
    dists: Mapping[str, BaseDistribution], defaults: Mapping[str, Any], prune_steps: int = 2
) -> list[dict[str, Any]]:
    """Parameter sets to enqueue before the sampler's first proposal, fast end first. Other keys of the
    space take their configured value where the space allows it, else the sampler picks them."""
    levels = {k: _levels(d) for k, d in dists.items() if k in (*FAST_END, PRUNE, *EACH)}
    if not levels:
        return []
    fixed = {k: pick(levels[k]) for k, pick in FAST_END.items() if k in levels}
    fixed |= {k: defaults[k] for k, d in dists.items() if k not in levels and _allowed(d, defaults.get(k))}
    ratios = sorted(levels.get(PRUNE, []), reverse=True)
    picks = [ratios[0], ratios[(len(ratios) - 1) // 2]] if ratios else []  # highest, then middle
    prune = [{PRUNE: r} for r in dict.fromkeys(picks)][:prune_steps]
    keys = [k for k in EACH if k in levels]
    each = [dict(zip(keys, combo)) for combo in itertools.product(*(levels[k] for k in keys))]
    return [{**fixed, **step, **one} for step in prune or [{}] for one in each]


def _levels(d: BaseDistribution) -> list[Any]:
    """Every value of a finite dimension; the ends and the middle of a continuous one."""
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    values = grid({"k": d})
    if values is not None:
        return values["k"]
    mid = (d.low + d.high) / 2
    return [d.low, round(mid) if isinstance(d, IntDistribution) else mid, d.high]


def _allowed(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return isinstance(value, (int, float)) and dist.low <= value <= dist.high
