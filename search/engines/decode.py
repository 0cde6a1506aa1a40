"""Language models on PyTorch: eager (with torchao weight-only kernels) and torch.compile with a static KV cache.

What is timed is what a server does per output token: one decode step for every sequence in the batch,
with the KV cache, at the mean context of a generation (``gen.prompt_tokens + gen.new_tokens / 2``).
The step writes its token at that position and the cache is cut back after it, so every timed call is
the same step. The prefill of ``gen.prompt_tokens`` (time to first token) is a second timed call.
Perplexity is computed from whole blocks (no cache) through the same weights. Each engine plans and builds
its language models (``Engine.plan_lm``, ``Engine.build_lm``): PyTorch's here, ONNX Runtime's and OpenVINO's
in decode_onnx.py and decode_openvino.py.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infersearch.config import GenConfig
from infersearch.core.device import DTYPES, Capabilities
from infersearch.core.errors import UnsupportedError, library_step
from infersearch.engines.base import ArtifactFormat, BuildContext, Runner, Saved, register_format
from infersearch.measure.footprint import serialized_mb
from infersearch.passes.quantize import QuantPlan, quantize_lm


def plan_torch_lm(bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
    """How a language model's weights run on PyTorch (eager or compiled) on this device, or a one-line refusal."""
    caps.check_precision(precision, memory_bound=True)
    if bits == 32:
        return QuantPlan(32, "none", "none")
    if scheme not in ("auto", "weight_only"):
        raise UnsupportedError(
            "quant.scheme",
            f"{scheme} for a language model: allowed weight_only (or auto), torchao's weight-only kernels",
        )
    if caps.device == "cpu" and precision != "bf16":
        raise UnsupportedError(
            "precision",
            f"{precision} with quant.bits={bits} for a language model on cpu: torchao's packed weight-only kernels "
            "are fast only with bf16 activations (with fp32 they ran at 0.2-0.3x of fp32 eager); use precision=bf16",
        )
    if bits == 8:
        return QuantPlan(8, "torchao-int8-weight-only", "real")
    return QuantPlan(4, "torchao-int4-weight-only-cpu" if caps.device == "cpu" else "torchao-int4-weight-only", "real")


@dataclass
class _Step:
    """A prefilled KV cache and the token each sequence decodes next, at position ``at``."""

    token: torch.Tensor
    cache: Any
    at: torch.Tensor


def context_ids(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` tokens per sequence from a batch of blocks (repeated when a block is shorter)."""
    reps = -(-n // x.shape[1])
    return x.repeat(1, reps)[:, :n].contiguous()


def _cache(model: nn.Module, static: bool, length: int, batch: int):
    from transformers import DynamicCache, StaticCache

    if static:
        return StaticCache(config=model.config, max_cache_len=length, max_batch_size=batch)
    return DynamicCache(config=model.config)


def cache_argument(model: nn.Module) -> str:
    """transformers 5.2x names the KV cache ``cache``; earlier releases ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def lm_runner(model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig, compiled: str | None) -> Runner:
    """``compiled``: a torch.compile mode (static cache, one graph for the step), or None for eager."""
    with library_step("precision", "torch"):
        model = model.to(device=ctx.device, dtype=DTYPES[ctx.precision]).eval()
    with library_step("quantize", "torchao"):
        model = quantize_lm(model, qplan, ctx.group_size)
    at, static = gen.context, compiled is not None
    kw = cache_argument(model)
    # transformers 4.x takes where the tokens go; 5.x caches count their own length (crop rolls it back)
    takes_positions = "cache_position" in inspect.signature(model.forward).parameters
    positions = lambda p: {"cache_position": p} if takes_positions else {}  # noqa: E731
    step = model.forward
    settings: dict[str, Any] = {"engine": "compile" if static else "eager", "version": torch.__version__,
                                "precision": ctx.precision, "kv_cache": "static" if static else "dynamic"}  # fmt: skip

    @torch.no_grad()
    def prepare(x: torch.Tensor) -> _Step:
        ids = context_ids(x, at + 1).to(ctx.device)
        cache = _cache(model, static, at + 1, len(ids))
        model(input_ids=ids[:, :at], **{kw: cache}, use_cache=True, logits_to_keep=1, **positions(torch.arange(at)))
        return _Step(ids[:, at:], cache, torch.tensor([at], device=ctx.device))

    @torch.no_grad()
    def run(s: _Step) -> torch.Tensor:
        logits = step(input_ids=s.token, **{kw: s.cache}, use_cache=True, **positions(s.at)).logits
        s.cache.crop(-1)  # the same step again next time
        return logits

    if static:
        step = torch.compile(model.forward, mode=compiled, fullgraph=False)
        t0 = time.perf_counter()
        with library_step("compile", "torch"):
            state = prepare(ctx.calibration[:1])
            run(state)
            run(state)  # the step's graph, then one run on it
        settings |= {"compile_mode": compiled, "compile_s": time.perf_counter() - t0}

    @torch.no_grad()
    def prefill(x: torch.Tensor) -> torch.Tensor:
        """Time to first token: a fresh cache, the prompt, the first token's logits."""
        ids = x[:, : gen.prompt_tokens]
        cache = _cache(model, False, 0, len(ids))
        return model(input_ids=ids, **{kw: cache}, use_cache=True, logits_to_keep=1).logits[:, -1]

    return Runner(
        prepare=prepare,
        run=run,
        to_torch=lambda y: y.float().cpu(),
        size_mb=serialized_mb(model),
        save=lambda path: save_lm(model, path),
        settings=settings | {"quantized": qplan.method},
        forward=lambda ids: model(input_ids=ids.to(ctx.device)).logits.float().cpu(),
        prefill=prefill,
    )


# float weights as Hugging Face saves them; torchao's quantized weights (tensor subclasses) as a state dict
# beside the config (torchao must be importable to load it). Not served yet: ``infersearch serve`` refuses them.
HF_CAUSAL_LM = register_format(
    ArtifactFormat(
        "hf-causal-lm",
        "import torch\nfrom transformers import AutoModelForCausalLM\nfrom tokenizers import Tokenizer\n"
        "model, tok = AutoModelForCausalLM.from_pretrained('.'), Tokenizer.from_file('tokenizer.json')\n"
        "y = model.generate(torch.tensor([tok.encode(text).ids]), max_new_tokens=32)",
    )
)
HF_TORCHAO_STATE = register_format(
    ArtifactFormat(
        "hf-config+torchao-state",
        "import torch, torchao  # noqa: F401 (its tensor types)\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\nfrom tokenizers import Tokenizer\n"
        "model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained('.'), dtype=torch.bfloat16)\n"
        "model.load_state_dict(torch.load('model_state.pt', weights_only=False), assign=True)\n"
        "tok = Tokenizer.from_file('tokenizer.json')\n"
        "y = model.generate(torch.tensor([tok.encode(text).ids]), max_new_tokens=32)",
    )
)


def save_lm(model: nn.Module, path: Path) -> Saved:
    """A float model as Hugging Face saves it (``from_pretrained`` loads it). torchao's quantized weights
    are tensor subclasses that neither safetensors nor a whole-module pickle take: their state dict is saved
    beside the config (``from_config``, then ``load_state_dict(..., assign=True)``)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a progress bar per shard is noise in a study's output
    path.mkdir(parents=True, exist_ok=True)
    if all(type(p.data) is torch.Tensor for p in model.parameters()):
        model.save_pretrained(path)
        fmt = HF_CAUSAL_LM
    else:
        model.config.save_pretrained(path)
        torch.save(model.state_dict(), path / "model_state.pt")
        fmt = HF_TORCHAO_STATE
    return Saved(fmt.name, sorted(p for p in path.iterdir() if p.is_file()))
