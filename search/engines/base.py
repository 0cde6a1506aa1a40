"""The shape every inference engine has: plan quantization, build a runner, save it in a format it registers.

Adding an engine adds one module in ``infersearch.engines`` with one :class:`Engine` subclass (it registers
itself under its ``name``, an :class:`~infersearch.config.EngineName` value) and the
:class:`ArtifactFormat` its runners save (``register_format``); the trial pipeline, the export and
serving have no per-engine branches.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from infersearch.config import EngineName, GenConfig
from infersearch.core.device import Capabilities
from infersearch.core.errors import UnsupportedError, library_step
from infersearch.passes.quantize import QuantPlan


class EngineMissing(UnsupportedError):
    """The engine's runtime is not installed."""


Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ArtifactFormat:
    """How a saved artifact is loaded: ``recipe`` is the manifest's snippet for its user (``$hint``: the
    runner's OpenVINO precision hint); ``serve(model_dir, manifest, threads)`` loads it as a numpy function
    for ``infersearch serve``, None where that format is not served yet (the language models)."""

    name: str
    recipe: str
    serve: Callable[[Path, dict[str, Any], int], Predict] | None = None

    def load_recipe(self, hint: str = "") -> str:
        return Template(self.recipe).substitute(hint=repr(hint))


FORMATS: dict[str, ArtifactFormat] = {}


def register_format(fmt: ArtifactFormat) -> ArtifactFormat:
    """Called by the engine module whose runners save ``fmt``: the export and serving find it here."""
    if fmt.name in FORMATS:
        raise ValueError(f"artifact format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


@dataclass(frozen=True)
class Saved:
    """What a runner's ``save`` wrote: the name of its :class:`ArtifactFormat` and the files, so nothing
    downstream guesses the format from file names."""

    format: str
    files: list[Path]


@dataclass
class BuildContext:
    """What an engine gets besides the float model: the device, threads and data."""

    device: str
    precision: str
    threads: int
    calibration: torch.Tensor  # fp32 training inputs, on CPU
    workdir: Path  # scratch space for exported files
    group_size: int = 128  # a language model's weight-only quantization: weights per scale
    accuracy_level: int = 4  # ONNX Runtime's MatMulNBits: the activations' precision (quant.accuracy_level)
    symmetric: bool = True  # int4 weights without zero points (quant.symmetric)
    int4_ratio: float = 1.0  # OpenVINO's NNCF: the share of layers in int4, the rest int8 (quant.int4_ratio)
    kv_cache: str = "auto"  # OpenVINO's KV cache precision (quant.kv_cache): auto, f32, f16, u8
    tokenizer: Any = None  # a language model's (tokenizers.Tokenizer): an engine that ships one beside its graph


@dataclass
class Runner:
    """A built variant. ``run`` is what is timed; ``prepare`` converts a torch batch to the
    engine's native input outside the timed region, as a server would hold it."""

    prepare: Callable[[torch.Tensor], Any]
    run: Callable[[Any], Any]
    to_torch: Callable[[Any], torch.Tensor]
    size_mb: float
    save: Callable[[Path], Saved]
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
    name: str = ""  # an EngineName value: the subclass registers itself under it
    package: str = ""  # the import that must succeed
    extra: str | None = None  # the pip extra that installs it
    registry: ClassVar[dict[str, type[Engine]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            Engine.registry[cls.name] = cls

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

    def plan_lm(self, bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
        """How a language model's weights run in this engine on this device, or raise UnsupportedError."""
        takes = [n for n in EngineName if n in Engine.registry and Engine.registry[n].plan_lm is not Engine.plan_lm]
        raise UnsupportedError(
            "engine",
            f"{self.name} does not take language models yet; allowed for a language model: {', '.join(takes)}",
        )

    def build_lm(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
        """A language model's runner (engines/decode.py): ``run`` is one decode step, ``prefill`` the prompt."""
        raise NotImplementedError(f"{self.name} plans language models but does not build them")


def file_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 2**20
