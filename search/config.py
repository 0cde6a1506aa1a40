"""Typed configuration: registered in Hydra's ConfigStore so that Hydra itself
rejects unknown keys, wrong types and values outside an enum; ranges and
combinations are checked in :func:`validate` with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from search.errors import ConfigError


class Precision(Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class DeviceChoice(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Importance(Enum):
    l2 = "l2"
    l1 = "l1"
    taylor = "taylor"
    random = "random"


QUANT_BITS = (32, 8, 4)
MAX_PRUNE_RATIO = 0.9


@dataclass
class PruneConfig:
    ratio: float = 0.0  # share of channels removed per prunable layer, in [0, 0.9]
    importance: Importance = Importance.l2
    round_to: int = 8  # pruned widths stay multiples of this (kernel-friendly)


@dataclass
class RecoverConfig:
    epochs: int = 8  # fine-tuning epochs after pruning (skipped when nothing was pruned)
    lr: float = 1e-3
    distill: float = 0.5  # weight of distillation from the unpruned model; 0 turns it off
    temperature: float = 4.0


@dataclass
class QuantConfig:
    bits: int = 32  # 32: float weights; 8: int8 kernels; 4: int4 (real where the device has it)
    calibration_samples: int = 512


@dataclass
class MeasureConfig:
    warmup: int = 10
    min_repeats: int = 50  # per candidate, summed over rounds
    min_time_s: float = 0.5  # per candidate, summed over rounds
    rounds: int = 5  # interleaved rounds of variant and baseline
    threads: int = 0  # 0: all cores the process may use
    baseline: bool = True  # time the fp32 baseline in the same rounds


@dataclass
class Config:
    model: Any = MISSING
    prune: PruneConfig = field(default_factory=PruneConfig)
    recover: RecoverConfig = field(default_factory=RecoverConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    precision: Precision = Precision.fp32
    batch_size: int = 1
    device: DeviceChoice = DeviceChoice.auto
    seed: int = 0
    cache_dir: str = "outputs/cache"


def validate(cfg: Config) -> None:
    """Range checks Hydra's types cannot express."""
    if not 0.0 <= cfg.prune.ratio <= MAX_PRUNE_RATIO:
        raise ConfigError("prune.ratio", f"{cfg.prune.ratio} is out of range; allowed: 0 to {MAX_PRUNE_RATIO}")
    if cfg.prune.round_to < 1:
        raise ConfigError("prune.round_to", f"{cfg.prune.round_to} must be >= 1")
    if cfg.quant.bits not in QUANT_BITS:
        allowed = ", ".join(map(str, QUANT_BITS))
        raise ConfigError("quant.bits", f"{cfg.quant.bits} is not supported; allowed: {allowed}")
    if cfg.quant.calibration_samples < 1:
        raise ConfigError("quant.calibration_samples", "must be >= 1")
    if cfg.batch_size < 1:
        raise ConfigError("batch_size", f"{cfg.batch_size} must be a positive integer")
    if cfg.recover.epochs < 0 or cfg.recover.lr <= 0:
        raise ConfigError("recover", "epochs must be >= 0 and lr > 0")
    if not 0.0 <= cfg.recover.distill <= 1.0:
        raise ConfigError("recover.distill", f"{cfg.recover.distill} is out of range; allowed: 0 to 1")
    m = cfg.measure
    if m.warmup < 0 or m.min_repeats < 1 or m.rounds < 1 or m.min_time_s < 0 or m.threads < 0:
        raise ConfigError("measure", "warmup >= 0, min_repeats >= 1, rounds >= 1, min_time_s >= 0, threads >= 0")


def register() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


register()
