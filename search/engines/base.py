"""The shape every inference engine has: plan quantization, build a runner, save it.

Adding an engine adds one module with one :class:`Engine` subclass, registered in
``search.engines``; the trial pipeline has no per-engine branches.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infersearch.device import Capabilities
from infersearch.errors import UnsupportedError, library_step
from infersearch.passes.quantize import QuantPlan


class EngineMissing(UnsupportedError):
    """The engine's runtime is not installed."""


@dataclass
class BuildContext:
    """What an engine gets besides the float model: the device, threads and data."""

    device: str
    precision: str
    threads: int
    calibration: torch.Tensor  # fp32 training inputs, on CPU
    workdir: Path  # scratch space for exported files
    group_size: int = 128  # a language model's weight-only quantization: weights per scale


@dataclass
class Runner:
    """A built variant. ``run`` is what is timed; ``prepare`` converts a torch batch to the
    engine's native input outside the timed region, as a server would hold it."""

    prepare: Callable[[torch.Tensor], Any]
    run: Callable[[Any], Any]
    to_torch: Callable[[Any], torch.Tensor]
    size_mb: float
    save: Callable[[Path], list[Path]]
    settings: dict[str, Any] = field(default_factory=dict)
    # a language model: whole blocks to logits (perplexity), and the prefill timed as time to first token;
    # ``run`` is then one decode step (engines/decode.py)
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    prefill: Callable[[torch.Tensor], Any] | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward is not None:
            return self.forward(x)
        return self.to_torch(self.run(self.prepare(x)))


class Engine(ABC):
    name: str = ""
    package: str = ""  # the import that must succeed
    extra: str | None = None  # the pip extra that installs it

    def __init__(self, **options: Any) -> None:
        self.options = options

    def require(self) -> None:
        try:
            importlib.import_module(self.package)
        except ImportError as exc:
            hint = f"pip install 'infersearch[{self.extra}]'" if self.extra else f"pip install {self.package}"
            raise EngineMissing("engine", f"{self.name} needs {self.package}, which is not installed: {hint}") from exc

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def step(self, name: str) -> AbstractContextManager[None]:
        """A build step (export, quantize, convert, compile) whose library failure reaches the user as one line."""
        return library_step(name, self.name)

    @abstractmethod
    def plan(self, bits: int, caps: Capabilities, precision: str, scheme: str = "auto") -> QuantPlan:
        """How ``bits`` runs in this engine on this device, or raise UnsupportedError."""

    @abstractmethod
    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        """Turn the pruned+recovered fp32 model into a runner at ``ctx.precision``."""


def file_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 2**20
