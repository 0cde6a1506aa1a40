"""Language models through onnxruntime-genai's model builder: the recipe people deploy decoders with on
ONNX Runtime today (``python -m onnxruntime_genai.models.builder -p int4 -e cpu``), with its knobs searched
instead of taken on faith: precision (fp32, or int8/int4 weights in ``MatMulNBits``), block size
(``quant.group_size``), the kernel's activation precision (``quant.accuracy_level``: 4 = int8, 1 = fp32) and
symmetric or zero-point weights (``quant.symmetric``). The builder writes its own graph: fused
``GroupQueryAttention`` and ``SkipSimplifiedLayerNormalization`` with the rotary embedding inside, where the
generic export (decode_onnx.py) leaves dozens of small ops per layer.

The builder reads a Hugging Face folder, so a pruned model (narrower MLP, fewer KV groups, fewer layers) goes
in through its changed config. The trial runs the builder's graph in ONNX Runtime's own session with the cache
fed back exactly as the other engines' language models are timed (decode_onnx.flat_kv_runner); the export is
the builder's folder (``genai_config.json`` beside the graph), which ``onnxruntime_genai.Model`` loads.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from infersearch.config import GenConfig
from infersearch.core.device import Capabilities
from infersearch.core.errors import ConfigError, UnsupportedError, library_step
from infersearch.engines.base import ArtifactFormat, BuildContext, Engine, Runner, Saved, file_mb, register_format
from infersearch.engines.decode_onnx import cpu_session, flat_kv_runner, kv_shape
from infersearch.passes.quantize import QuantPlan

PRECISION = {32: "fp32", 8: "int8", 4: "int4"}  # quant.bits -> the builder's -p

# onnxruntime-genai's own folder (genai_config.json beside the builder's graph): its generator feeds the cache
GENAI_FOLDER = register_format(
    ArtifactFormat(
        "onnxruntime-genai",
        "import numpy as np, onnxruntime_genai as og\nfrom tokenizers import Tokenizer\n"
        "model, tok = og.Model('.'), Tokenizer.from_file('tokenizer.json')\n"
        "prompt = tok.encode(text).ids\nparams = og.GeneratorParams(model)\n"
        "params.set_search_options(max_length=len(prompt) + 32, min_length=len(prompt) + 32, do_sample=False)\n"
        "generator = og.Generator(model, params)\ngenerator.append_tokens(prompt)\n"
        "while not generator.is_done():  # greedy; the generator keeps the KV cache\n"
        "    generator.generate_next_token()\n"
        "y = np.array([generator.get_sequence(0)])",
    )
)


class GenaiEngine(Engine):
    """Decoders only: the builder takes a Hugging Face causal LM, not a classifier."""

    name = "onnxruntime_genai"
    package = "onnxruntime_genai"
    extra = "lm"

    def plan(self, bits: int, caps: Capabilities, precision: str, scheme: str = "auto") -> QuantPlan:
        raise ConfigError("engine", "onnxruntime_genai builds decoders (language models) only; this model is not "
                                    "one: allowed eager, compile, onnxruntime, openvino")  # fmt: skip

    def build(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext) -> Runner:
        raise NotImplementedError("onnxruntime-genai builds language models only (plan refuses the rest)")

    def plan_lm(self, bits: int, caps: Capabilities, precision: str, scheme: str) -> QuantPlan:
        """fp32 activations on CPU (the builder's CPU graph); int8/int4 weights in MatMulNBits."""
        self.require()
        if caps.device != "cpu" or precision != "fp32":
            raise UnsupportedError("precision", f"{precision} on {caps.device} with onnxruntime_genai: allowed fp32 "
                                                "on cpu (the builder's CPU graph)")  # fmt: skip
        if bits != 32 and scheme not in ("auto", "weight_only"):
            raise UnsupportedError("quant.scheme", f"{scheme} on onnxruntime_genai: allowed weight_only (or auto), "
                                                   "the builder's MatMulNBits")  # fmt: skip
        return QuantPlan(32, "none", "none") if bits == 32 else QuantPlan(bits, f"genai-builder-int{bits}", "real")

    def build_lm(self, model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
        return genai_lm_runner(model, qplan, ctx, gen)


def builder_args(src: Path, out: Path, bits: int, group_size: int, accuracy_level: int, symmetric: bool) -> list[str]:
    """The builder's command line for this variant (the recipe a user can re-run by hand)."""
    args = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(out),
            "-p", PRECISION[bits], "-e", "cpu", "-c", str(out.parent / "hf-cache")]  # fmt: skip
    if bits < 32:
        args += ["--extra_options", f"block_size={group_size}", f"accuracy_level={accuracy_level}",
                 f"is_symmetric={str(symmetric).lower()}"]  # fmt: skip
    return args


def run_builder(model: nn.Module, tokenizer: Any, out: Path, args: list[str]) -> Path:
    """Save the (pruned) float model where the builder reads it and run the builder; its own last error line
    is what a failure says."""
    src = Path(args[args.index("-i") + 1])
    from transformers import PreTrainedTokenizerFast

    model.float().save_pretrained(src)
    # the builder copies the tokenizer beside the graph (onnxruntime_genai.Tokenizer reads it there)
    tok = tokenizer or _placeholder_tokenizer(model.config.vocab_size)
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(src)
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0 or not (out / "model.onnx").exists():
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"the builder exited {done.returncode}")
    return out / "model.onnx"


def _placeholder_tokenizer(vocab_size: int) -> Any:
    """A model that came without a tokenizer still needs one in the builder's folder: token ``i`` is ``<i>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"<{i}>": i for i in range(vocab_size)}, unk_token="<0>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def _adapter(session) -> Any:
    """Our flat feed (``input_ids``, ``past_{2i}``/``past_{2i+1}``) in the builder's names, with the attention
    mask (and positions, if the graph takes them) it needs; outputs back in (logits, key_0, value_0, ...) order."""
    inputs = {i.name for i in session.get_inputs()}
    layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
    outputs = ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]

    def call(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids = feed["input_ids"]
        batch, new = ids.shape
        past = feed["past_0"].shape[2]
        named = {"input_ids": ids, "attention_mask": np.ones((batch, past + new), np.int64)}
        if "position_ids" in inputs:
            named["position_ids"] = np.broadcast_to(np.arange(past, past + new, dtype=np.int64), (batch, new)).copy()
        for i in range(layers):
            named[f"past_key_values.{i}.key"] = feed[f"past_{2 * i}"]
            named[f"past_key_values.{i}.value"] = feed[f"past_{2 * i + 1}"]
        return session.run(outputs, named)

    return call


def genai_lm_runner(model: nn.Module, qplan: QuantPlan, ctx: BuildContext, gen: GenConfig) -> Runner:
    import onnxruntime as ort
    import onnxruntime_genai as og

    head_dim = kv_shape(model)[2]
    if head_dim % 16:
        raise UnsupportedError("engine", f"onnxruntime_genai's GroupQueryAttention needs a head size that is a "
                                         f"multiple of 16; this model's is {head_dim}: use onnxruntime")  # fmt: skip
    out = ctx.workdir / "genai"
    args = builder_args(ctx.workdir / "hf", out, qplan.bits, ctx.group_size, ctx.accuracy_level, ctx.symmetric)
    with library_step("export", "onnxruntime-genai"):
        path = run_builder(model, ctx.tokenizer, out, args)
    session = cpu_session(path, ctx.threads, "onnxruntime-genai")

    def save(target: Path) -> Saved:
        shutil.copytree(out, target, dirs_exist_ok=True)
        return Saved(GENAI_FOLDER.name, sorted(p for p in target.iterdir() if p.is_file()))

    files = [p for p in out.iterdir() if p.name.startswith("model.onnx")]
    settings = {"engine": "onnxruntime_genai", "version": og.__version__, "onnxruntime": ort.__version__,
                "precision": "fp32", "kv_cache": "explicit", "quantized": qplan.method,
                "builder": " ".join(["python", *args[1:]]), "intra_op_num_threads": ctx.threads}  # fmt: skip
    return flat_kv_runner(model, gen, _adapter(session), file_mb(*files), save, settings)
