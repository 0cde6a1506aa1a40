"""One trial: build one variant (prune -> recover -> engine: export, quantize, precision) and measure it."""

from __future__ import annotations

import copy
import logging
import math
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from infersearch.config import Config, GenConfig, allowed_drop, validate
from infersearch.core.cache import TensorCache
from infersearch.core.device import capabilities, resolve, set_tf32
from infersearch.core.errors import ConfigError, TrialRejected
from infersearch.engines import BuildContext, Engine, Runner, get_engine
from infersearch.engines.decode import lm_runner
from infersearch.measure.agreement import check as check_agreement
from infersearch.measure.anchor import (
    Anchor,
    AnchorBook,
    anchored_metrics,
    time_anchored,
)
from infersearch.measure.footprint import peak_memory_mb, serialized_mb
from infersearch.measure.generation import generation_metrics
from infersearch.measure.latency import LatencyStats, Timing, measure_interleaved
from infersearch.models.lm import logits_of
from infersearch.models.task import Task
from infersearch.models.training import evaluate
from infersearch.passes.prune import Footprint, footprint
from infersearch.passes.quantize import QuantPlan
from infersearch.trial import preload
from infersearch.trial.baseline import Baseline
from infersearch.trial.variant import pruned_model

log = logging.getLogger(__name__)


@dataclass
class TrialResult:
    params: dict[str, Any]
    metric: dict[str, Any]  # the model's metric: name, direction, proportion
    metrics: dict[str, float]
    baseline: dict[str, float]
    env: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def params_of(cfg: Config, generation: bool = False) -> dict[str, Any]:
    q = cfg.quant
    lm = {"prune_depth": cfg.prune.depth, "quant_group_size": q.group_size} if generation else {}
    if generation and cfg.engine in ("onnxruntime", "onnxruntime_genai"):  # only MatMulNBits reads it
        lm["quant_accuracy_level"] = q.accuracy_level
    if generation and cfg.engine in ("onnxruntime", "onnxruntime_genai", "openvino"):
        lm["quant_symmetric"] = q.symmetric
    if generation and cfg.engine == "openvino":  # NNCF's int4 share and the CPU plugin's KV cache
        lm |= {"quant_int4_ratio": q.int4_ratio, "quant_kv_cache": q.kv_cache}
    return lm | {
        "prune_ratio": cfg.prune.ratio,
        "prune_importance": cfg.prune.importance,
        "quant_bits": cfg.quant.bits,
        "quant_scheme": cfg.quant.scheme,
        "precision": cfg.precision,
        "batch_size": cfg.batch_size,
        "engine": cfg.engine,
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


def check(cfg: Config, generation: bool = False) -> tuple[str, Engine, QuantPlan]:
    """Everything that can be refused before work starts: ranges, device, engine, precision, bit-width.
    ``generation``: the model is a language model (the engine's ``plan_lm``; kernels: engines/decode.py)."""
    validate(cfg)
    device = resolve(cfg.device)
    caps = capabilities(device)
    engine = get_engine(cfg.engine, mode=cfg.compile.mode)
    if generation:
        return device, engine, engine.plan_lm(cfg.quant.bits, caps, cfg.precision, cfg.quant.scheme)
    if cfg.prune.depth > 0:
        raise ConfigError("prune.depth", "drops decoder layers of a language model; this model is not one: use 0")
    caps.check_precision(cfg.precision)
    return device, engine, engine.plan(cfg.quant.bits, caps, cfg.precision, cfg.quant.scheme)


@dataclass
class Built:
    """A variant ready to run, with what it was built from."""

    runner: Runner
    reference: torch.nn.Module  # the pruned+recovered fp32 PyTorch model the runner came from
    base: Baseline
    qplan: QuantPlan
    prune_hit: bool
    recover_losses: list[float]
    footprints: tuple[Footprint, Footprint]  # before, after pruning
    quality: tuple[float, float]  # the model's metric on validation, test
    agreement: dict[str, float]
    workdir: tempfile.TemporaryDirectory

    @property
    def task(self) -> Task:
        return self.base.task


def reject_early(runner: Runner, base: Baseline, cfg: Config) -> None:
    """Raise TrialRejected when the metric on the first validation batches is worse than the baseline's on
    the same batches by more than the allowed drop plus three binomial standard errors: the full split
    cannot save it. Only a proportion (accuracy) has that error; any other metric is never rejected early."""
    task, limit = base.task, allowed_drop(cfg.study, base.val_metric)
    if limit is None or not task.metric.proportion:
        return
    n = max(32, math.ceil(len(task.splits.val) * cfg.study.early_subset))
    subset = task.splits.val.head(n)
    value, ref = evaluate(runner, task, subset), evaluate(base.model, task, subset)
    noise = 3 * math.sqrt(max(value * (1 - value), 1 / n) / n)
    drop = task.metric.worse_by(ref, value)
    if drop > limit + noise:
        name = task.metric.name
        raise TrialRejected(
            f"{name} on the first {n} validation samples is {drop:.4g} worse than the baseline's "
            f"(limit {limit:.4g} + {noise:.4g} noise): cannot meet study.max_drop; latency not measured"
        )


def build(cfg: Config, model_cfg: Any, sw: _Stopwatch | None = None, early: bool = False) -> Built:
    """prune -> recover -> engine (export, quantize, precision), then accuracy and agreement."""
    threads = threads_for(cfg)
    torch.set_num_threads(threads)
    cache = TensorCache(cfg.cache_dir)
    sw = sw or _Stopwatch()
    with sw("baseline"):
        base = preload.baseline(model_cfg, cache)
        task = base.task
    device, engine, qplan = check(cfg, task.generation)
    set_tf32(device, cfg.precision)
    example = task.example_input(1)
    before = footprint(base.model, example)
    model, prune_hit, losses = pruned_model(base, cfg.prune, cfg.recover, cfg.seed, cache, sw)
    after = footprint(model, example)
    reference = copy.deepcopy(model).eval()
    workdir = tempfile.TemporaryDirectory(prefix="infersearch-")
    with sw("engine"):
        calibration = task.splits.calib.take(cfg.quant.calibration_samples)
        q = cfg.quant
        ctx = BuildContext(device, cfg.precision, threads, calibration, Path(workdir.name), q.group_size,
                           q.accuracy_level, q.symmetric, q.int4_ratio, q.kv_cache, task.tokenizer)  # fmt: skip
        if task.generation:
            runner = engine.build_lm(model, qplan, ctx, cfg.gen)
        else:
            runner = engine.build(model, qplan, ctx)
    with sw("evaluate"):
        if early and cfg.study.early_rejection:
            reject_early(runner, base, cfg)
        probe = task.splits.val.take(8 if task.generation else 256)
        exact = qplan.bits == 32 and ctx.precision == "fp32"
        agreed = check_agreement(logits_of(reference(probe)), runner(probe), exact)
        val = evaluate(runner, task, task.splits.val)
        test = evaluate(runner, task, task.splits.test)
        if not all(map(_finite, (val, test))):
            raise FloatingPointError(f"{task.metric.name} is NaN: the variant produces non-finite outputs")
    return Built(runner, reference, base, qplan, prune_hit, losses, (before, after), (val, test), agreed, workdir)


def rebuild(stored_config: dict[str, Any]) -> tuple[Config, Built]:
    """A recorded trial's variant again, from the resolved config stored with it (cached steps reused)."""
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(OmegaConf.structured(Config), stored_config)
    typed = OmegaConf.to_object(merged)
    return typed, build(typed, merged.model)


@dataclass
class _Timed:
    """What the latency step measured: the interleaved rounds, the anchor and the peak memory."""

    lat: dict[str, LatencyStats]
    anchor: Anchor | None
    peak_mb: float
    peak_method: str
    reference: torch.nn.Module  # the fp32 baseline on the device, as timed
    prefill: dict[str, LatencyStats] | None = None  # a language model's prefill (time to first token)
    prefill_anchor: Anchor | None = None


def baseline_call(base: Baseline, x: torch.Tensor, device: str, gen: GenConfig) -> tuple[torch.nn.Module, Any, Any]:
    """The fp32 eager baseline on the device and what of it is timed beside a variant: its forward pass, or
    (a language model) its decode step and its prefill. Returns ``(module, call, prefill or None)``."""
    reference = base.fresh().to(device)
    if not base.task.generation:
        x_ref = x.to(device)
        return reference, lambda: reference(x_ref), None
    ctx = BuildContext(device, "fp32", torch.get_num_threads(), x[:1], Path(tempfile.gettempdir()))
    r = lm_runner(reference, QuantPlan(32, "none", "none"), ctx, gen, None)
    state = r.prepare(x)
    return reference, lambda: r.run(state), lambda: r.prefill(x)


def _time(b: Built, cfg: Config, device: str, device_name: str, sw: _Stopwatch) -> _Timed:
    """The variant, and the baseline beside it in the same rounds (anchored: through the state gate); a
    language model's decode step so, then its prefill so."""
    x = batch_of(b.task, cfg.batch_size)
    native = b.runner.prepare(x)
    reference, call, prefill = baseline_call(b.base, x, device, cfg.gen)
    phases = {"": {"variant": lambda: b.runner.run(native), "baseline": call}}
    if prefill is not None:
        phases["prefill"] = {"variant": lambda: b.runner.prefill(x), "baseline": prefill}
    m, lat, anchors = cfg.measure, {}, {}
    with sw("latency"):
        for phase, fns in phases.items():
            if not m.baseline:
                del fns["baseline"]
            if m.anchor:
                key = b.base.key + (f":{phase}" if phase else "")
                book = AnchorBook(key, device, device_name, torch.get_num_threads(), m, TensorCache(cfg.cache_dir))
                lat[phase], anchors[phase] = time_anchored(fns, cfg.batch_size, Timing.of(m), device, book)
            else:
                lat[phase] = measure_interleaved(fns, cfg.batch_size, Timing.of(m), device)
    peak, peak_method = peak_memory_mb(phases[""]["variant"], device, b.runner.size_mb)
    prefill_lat = lat.get("prefill")
    return _Timed(lat[""], anchors.get(""), peak, peak_method, reference, prefill_lat, anchors.get("prefill"))


def _phase_metrics(lat: dict[str, LatencyStats], anchor: Anchor | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the variant's latency metrics, the baseline's): anchored when an anchor was measured."""
    if anchor is not None:
        return anchored_metrics(lat["variant"], lat["baseline"], anchor), anchored_metrics(
            lat["baseline"], lat["baseline"], anchor
        )
    variant = lat["variant"].as_metrics()
    baseline = lat["baseline"].as_metrics() if "baseline" in lat else {}
    if baseline:
        variant["speedup_vs_baseline"] = lat["baseline"].p50_ms / lat["variant"].p50_ms
    return variant, baseline


def _latency_metrics(t: _Timed) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decode step's (or forward pass's) metrics; a language model's in its units too (generation.py)."""
    variant, baseline = _phase_metrics(t.lat, t.anchor)
    if t.prefill is None:
        return variant, baseline
    pv, pb = _phase_metrics(t.prefill, t.prefill_anchor)
    return generation_metrics(variant, pv), generation_metrics(baseline, pb)


def _metrics(b: Built, latency: dict[str, Any], peak_mb: float) -> dict[str, Any]:
    metric, (val, test), after = b.task.metric, b.quality, b.footprints[1]
    metrics = {
        metric.name: val,
        f"test_{metric.name}": test,
        f"{metric.name}_drop": metric.worse_by(b.base.val_metric, val),
        **latency,
        "size_mb": b.runner.size_mb,
        "params": after.params,
        "macs": after.macs,
        "peak_mem_mb": peak_mb,
    }
    if "compile_s" in b.runner.settings:
        metrics["compile_s"] = b.runner.settings["compile_s"]
    return metrics


def _baseline(b: Built, reference: torch.nn.Module, latency: dict[str, Any]) -> dict[str, Any]:
    metric, before = b.task.metric, b.footprints[0]
    return {
        metric.name: b.base.val_metric,
        f"test_{metric.name}": b.base.test_metric,
        "size_mb": serialized_mb(reference),
        "params": before.params,
        "macs": before.macs,
        **latency,
    }


def _env(b: Built, cfg: Config, device: str, caps: Any, t: _Timed) -> dict[str, Any]:
    anchored = cfg.measure.anchor
    return {
        "device": device,
        "device_name": caps.name,
        "device_notes": caps.notes,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "engine": b.runner.settings,
        "peak_mem_method": t.peak_method,
        "latency_round_p50_ms": list(t.lat["variant"].round_p50_ms),
        "latency_method": "anchored to the baseline (ratio x anchor)" if anchored else "measured",
        "anchor_cache_hit": t.anchor.hit if t.anchor is not None else None,
        "anchor_taken": t.anchor.taken if t.anchor is not None else None,
        "anchor_replaced_ms": t.anchor.replaced_ms if t.anchor is not None else None,
        "output_agreement": b.agreement,
        "passes": {
            "prune": {"applied": cfg.prune.ratio > 0, "kernel": "real", "cache_hit": b.prune_hit},
            "quantize": {"applied": b.qplan.bits != 32, "method": b.qplan.method, "kernel": b.qplan.kernel},
            "precision": {"dtype": cfg.precision, "kernel": "real", "tf32": set_tf32(device, cfg.precision)},
        },
        "emulated": b.qplan.emulated,
        "baseline_source": b.base.source,
    }


def evaluate_trial(cfg: Config, model_cfg: Any, early: bool = False) -> TrialResult:
    """Build the variant ``cfg`` describes and measure it beside the fp32 eager baseline.
    ``early``: in a study, reject a trial that clearly misses the accuracy constraint (reject_early)."""
    sw = _Stopwatch()
    b = build(cfg, model_cfg, sw, early)
    device = resolve(cfg.device)
    caps = capabilities(device)
    timed = _time(b, cfg, device, caps.name, sw)
    latency, baseline_latency = _latency_metrics(timed)
    metric = b.task.metric
    return TrialResult(
        params=params_of(cfg, b.task.generation),
        metric={"name": metric.name, "direction": metric.direction, "proportion": metric.proportion},
        metrics=_metrics(b, latency, timed.peak_mb),
        baseline=_baseline(b, timed.reference, baseline_latency),
        env=_env(b, cfg, device, caps, timed),
        timings_s=sw.times,
        history={"recover_loss": b.recover_losses},
    )


def trial_dict(cfg: Config, model_cfg: Any, early: bool = False) -> dict[str, Any]:
    """:func:`evaluate_trial` as plain data: what crosses from an isolated trial's process."""
    return evaluate_trial(cfg, model_cfg, early).to_dict()


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def batch_of(task: Task, batch_size: int) -> torch.Tensor:
    """A batch of real validation inputs (only the first batches are read), repeated when the split is
    smaller than the batch."""
    x = task.splits.val.take(batch_size)
    reps = -(-batch_size // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].contiguous()
