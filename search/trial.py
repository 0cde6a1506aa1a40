"""One trial: build one variant (prune -> recover -> quantize -> precision) and measure it."""

from __future__ import annotations

import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from models.training import evaluate
from search.baseline import get_baseline, load_task
from search.cache import TensorCache
from search.config import Config, validate
from search.device import DTYPES, capabilities, resolve
from search.measure.footprint import peak_memory_mb, serialized_mb
from search.measure.latency import measure_interleaved
from search.passes.precision import set_precision
from search.passes.prune import footprint
from search.passes.quantize import plan, quantize
from search.variant import pruned_model


@dataclass
class TrialResult:
    params: dict[str, Any]
    metrics: dict[str, float]
    baseline: dict[str, float]
    env: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def params_of(cfg: Config) -> dict[str, Any]:
    return {
        "prune_ratio": cfg.prune.ratio,
        "prune_importance": _value(cfg.prune.importance),
        "quant_bits": cfg.quant.bits,
        "precision": _value(cfg.precision),
        "batch_size": cfg.batch_size,
        "engine": "eager",
    }


def threads_for(cfg: Config) -> int:
    if cfg.measure.threads:
        return cfg.measure.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Stopwatch:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


def check(cfg: Config) -> tuple[str, Any]:
    """Everything that can be refused before work starts: ranges, device, precision, bit-width."""
    validate(cfg)
    device = resolve(_value(cfg.device))
    caps = capabilities(device)
    precision = _value(cfg.precision)
    caps.check_precision(precision)
    return device, plan(cfg.quant.bits, caps, precision)


@dataclass
class Built:
    """A variant ready to run, with what it was built from."""

    variant: torch.nn.Module
    base: Any  # search.baseline.Baseline
    device: str
    dtype: torch.dtype
    qplan: Any
    prune_hit: bool
    recover_losses: list[float]
    macs_params: tuple[Any, Any]  # footprint before, after pruning
    accuracy: tuple[float, float]  # validation, test

    @property
    def task(self):
        return self.base.task

    def inputs(self, batch_size: int) -> torch.Tensor:
        return _batch(self.task, batch_size).to(device=self.device, dtype=self.dtype)


def build(cfg: Config, model_cfg: Any, sw: _Stopwatch | None = None) -> Built:
    """prune -> recover -> quantize -> precision, then accuracy (which no batch size changes)."""
    device, qplan = check(cfg)
    precision = _value(cfg.precision)
    torch.set_num_threads(threads_for(cfg))
    cache = TensorCache(cfg.cache_dir)
    sw = sw or _Stopwatch()
    with sw("baseline"):
        task = load_task(model_cfg)
        base = get_baseline(task, cache)
    example = task.example_input(1)
    before = footprint(base.model, example)
    with sw("prune_recover"):
        model, prune_hit, losses = pruned_model(base, cfg.prune, cfg.recover, cfg.seed, cache)
    after = footprint(model, example)
    with sw("quantize"):
        n = min(cfg.quant.calibration_samples, len(task.splits.train))
        dtype = DTYPES[precision]
        calibration = task.splits.train.x[:n].to(device=device, dtype=dtype)
        variant = quantize(set_precision(model, precision, device), qplan, calibration)
    with sw("accuracy"):
        val = evaluate(variant, task, task.splits.val, device=device, dtype=dtype)
        test = evaluate(variant, task, task.splits.test, device=device, dtype=dtype)
        if not all(map(_finite, (val, test))):
            raise FloatingPointError("accuracy is NaN: the variant produces non-finite outputs")
    return Built(variant, base, device, dtype, qplan, prune_hit, losses, (before, after), (val, test))


def evaluate_trial(cfg: Config, model_cfg: Any) -> TrialResult:
    """Build the variant ``cfg`` describes and measure it beside the fp32 baseline."""
    sw = _Stopwatch()
    b = build(cfg, model_cfg, sw)
    variant, base, device, qplan = b.variant, b.base, b.device, b.qplan
    caps = capabilities(device)
    precision = _value(cfg.precision)
    threads = torch.get_num_threads()
    before, after = b.macs_params
    val, test = b.accuracy
    prune_hit, losses = b.prune_hit, b.recover_losses
    x = b.inputs(cfg.batch_size)
    x_ref = x.float()
    reference = base.fresh().to(device)
    fns = {"variant": lambda: variant(x)}
    if cfg.measure.baseline:
        fns["baseline"] = lambda: reference(x_ref)
    m = cfg.measure
    with sw("latency"):
        lat = measure_interleaved(fns, cfg.batch_size, device, m.warmup, m.min_repeats, m.min_time_s, m.rounds)
    size_mb = serialized_mb(variant)
    peak, peak_method = peak_memory_mb(fns["variant"], device, size_mb)

    metrics = {
        "accuracy": val,
        "test_accuracy": test,
        "accuracy_drop": 100.0 * (base.val_accuracy - val),
        **lat["variant"].as_metrics(),
        "size_mb": size_mb,
        "params": after.params,
        "macs": after.macs,
        "peak_mem_mb": peak,
    }
    baseline = {
        "accuracy": base.val_accuracy,
        "test_accuracy": base.test_accuracy,
        "size_mb": serialized_mb(reference),
        "params": before.params,
        "macs": before.macs,
    }
    if "baseline" in lat:
        baseline.update(lat["baseline"].as_metrics())
        metrics["speedup_vs_baseline"] = lat["baseline"].p50_ms / lat["variant"].p50_ms
    env = {
        "device": device,
        "device_name": caps.name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "peak_mem_method": peak_method,
        "latency_round_p50_ms": list(lat["variant"].round_p50_ms),
        "passes": {
            "prune": {"applied": cfg.prune.ratio > 0, "kernel": "real", "cache_hit": prune_hit},
            "quantize": {"applied": qplan.bits != 32, "method": qplan.method, "kernel": qplan.kernel},
            "precision": {"dtype": precision, "kernel": "real"},
        },
        "emulated": qplan.emulated,
        "baseline_cache_hit": base.cache_hit,
    }
    return TrialResult(
        params=params_of(cfg),
        metrics=metrics,
        baseline=baseline,
        env=env,
        timings_s=sw.times,
        history={"recover_loss": losses},
    )


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def _batch(task, batch_size: int) -> torch.Tensor:
    """A batch of real validation inputs, repeated when the split is smaller than the batch."""
    x = task.splits.val.x
    reps = -(-batch_size // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].contiguous()
