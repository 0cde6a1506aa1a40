"""Causal language models: the decode step and prefill that are timed, pruning that keeps a model
loadable, torchao's weight-only kernels in bf16, refusals in one line, and a study end to end on a tiny
Llama trained here in seconds (the zoo's pydocs_llama at toy size)."""

from __future__ import annotations

import json

import pytest
import torch

from infersearch.config import GenConfig, PruneConfig
from infersearch.core.secrets import scrub
from infersearch.engines.base import BuildContext
from infersearch.engines.decode import lm_runner
from infersearch.models.pydocs_llama import llama
from infersearch.passes.lm_prune import prune_lm
from infersearch.passes.quantize import QuantPlan
from tests.conftest import load, read_csv, refusal, run_cli

# the zoo's language model at toy size: a 320-token BPE, 2 layers of width 32; trains in seconds
TINY_LM = ["model=pydocs_llama", "model.vocab=320", "model.d_model=32", "model.layers=2", "model.heads=2",
           "model.kv_heads=1", "model.ff=64", "model.block=32", "model.train_tokens=16000", "model.eval_tokens=2048",
           "model.epochs=1", "model.recover_steps=4", "gen.prompt_tokens=8", "gen.new_tokens=8", "quant.group_size=32",
           "measure.warmup=2", "measure.min_repeats=6", "measure.min_time_s=0.02", "measure.rounds=2",
           "measure.max_wait_s=2", "study.warm_start=false"]  # fmt: skip
FP32 = QuantPlan(32, "none", "none")


def _model(layers: int = 2, heads: int = 4, kv: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return llama(320, 32, layers, heads, kv, 64, 128).eval()


def _ctx(ids: torch.Tensor, precision: str = "fp32") -> BuildContext:
    return BuildContext("cpu", precision, 1, ids[:1], None, 32)


def test_the_timed_decode_step_is_the_next_token_of_a_full_forward_every_time():
    model, ids = _model(), torch.randint(0, 320, (3, 32), generator=torch.Generator().manual_seed(1))
    gen = GenConfig(prompt_tokens=8, new_tokens=8)  # the step decodes position 12
    runner = lm_runner(_model(), FP32, _ctx(ids), gen, None)
    with torch.no_grad():
        full = model(ids[:, :13]).logits
    state = runner.prepare(ids)
    first, again = runner.run(state)[:, -1], runner.run(state)[:, -1]  # the cache is cut back after each step
    assert torch.allclose(first, full[:, 12], atol=1e-4) and torch.allclose(again, first, atol=1e-6)
    assert torch.allclose(runner.prefill(ids), full[:, 7], atol=1e-4)  # the first token after the prompt
    assert torch.allclose(runner(ids[:, :13]), full, atol=1e-5)  # perplexity reads whole blocks


def test_pruned_width_kv_groups_and_depth_save_reload_and_generate(tmp_path):
    from transformers import AutoModelForCausalLM

    ids = torch.randint(0, 320, (2, 32), generator=torch.Generator().manual_seed(2))
    model = prune_lm(_model(layers=4), PruneConfig(ratio=0.5, heads=True, depth=0.25, round_to=8), _split(ids))
    c = model.config
    assert (c.intermediate_size, c.num_key_value_heads, c.num_attention_heads, c.num_hidden_layers) == (32, 1, 2, 3)
    assert model.model.layers[0].mlp.up_proj.out_features == 32 and model.model.layers[2].self_attn.layer_idx == 2
    model.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits, atol=1e-5)
        out = again.generate(ids[:, :8], max_new_tokens=4, do_sample=False)
    assert out.shape == (2, 12)
    gen = GenConfig(prompt_tokens=8, new_tokens=8)  # and the pruned model runs the timed step with its cache
    assert (
        lm_runner(model, FP32, _ctx(ids), gen, None)
        .run(lm_runner(model, FP32, _ctx(ids), gen, None).prepare(ids))
        .shape[0]
        == 2
    )


def _split(ids):
    from infersearch.models.task import Split

    return Split.tensors(ids, ids)


@pytest.mark.parametrize(("bits", "method"), [(8, "torchao-int8-weight-only"), (4, "torchao-int4-weight-only-cpu")])
def test_weight_only_kernels_in_bf16_are_real_and_close(bits, method):
    ids = torch.randint(0, 320, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = _model()(ids).logits
    runner = lm_runner(_model(), QuantPlan(bits, method, "real"), _ctx(ids, "bf16"), GenConfig(8, 8), None)
    assert type(runner_model_weight(runner)).__name__ != "Tensor"  # a torchao tensor subclass, not fake-quant
    cos = torch.nn.functional.cosine_similarity(runner(ids).flatten(), reference.flatten(), dim=0)
    assert cos > 0.98, cos
    assert runner.size_mb < 0.6 * lm_runner(_model(), FP32, _ctx(ids), GenConfig(8, 8), None).size_mb


def runner_model_weight(runner):
    return runner.run.__closure__ and next(
        c.cell_contents.model.layers[0].mlp.up_proj.weight
        for c in runner.forward.__closure__
        if hasattr(c.cell_contents, "model")
    )


@pytest.mark.parametrize(
    ("engine", "bits", "method", "precision", "fmt"),
    [("eager", 32, "none", "fp32", "hf-causal-lm"),
     ("eager", 8, "torchao-int8-weight-only", "bf16", "hf-config+torchao-state"),
     ("onnxruntime", 32, "none", "fp32", "onnx-causal-lm"), ("openvino", 32, "none", "fp32", "openvino-causal-lm"),
     ("onnxruntime_genai", 4, "genai-builder-int4", "fp32", "onnxruntime-genai")],
)  # fmt: skip
def test_each_engine_saves_a_language_model_in_its_format_whose_recipe_generates(
    engine, bits, method, precision, fmt, tmp_path, monkeypatch
):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    from infersearch.engines import FORMATS, get_engine

    ids = torch.randint(0, 320, (2, 32), generator=torch.Generator().manual_seed(5))
    ctx = BuildContext("cpu", precision, 1, ids[:1], tmp_path / "work", 32)
    model = _model(2, 2, 1) if engine == "onnxruntime_genai" else _model()  # its attention: heads of 16 or more
    runner = get_engine(engine).build_lm(model, QuantPlan(bits, method, "real"), ctx, GenConfig(8, 8))
    saved = runner.save(tmp_path / "model")
    assert saved.format == fmt and all(f.parent == tmp_path / "model" and f.is_file() for f in saved.files)
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(["[UNK]", "def", "main", "return"])}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(tmp_path / "model" / "tokenizer.json"))
    monkeypatch.chdir(tmp_path / "model")
    scope = {"text": "def main return"}
    exec(FORMATS[fmt].load_recipe(runner.settings.get("precision_hint", "")), scope)  # noqa: S102
    assert scope["y"].shape == (1, 3 + 32)  # the prompt and 32 generated tokens


@pytest.mark.parametrize(
    ("engine", "bits", "method"),
    [("onnxruntime", 32, "none"), ("onnxruntime", 4, "onnxruntime-matmulnbits-int4"), ("openvino", 32, "none"),
     ("openvino", 4, "nncf-int4-weights"), ("onnxruntime_genai", 32, "none"),
     ("onnxruntime_genai", 4, "genai-builder-int4")],
)  # fmt: skip
def test_deployment_engines_run_the_exported_decoder_with_its_cache_fed_back(engine, bits, method, tmp_path):
    from infersearch.engines.decode_genai import genai_lm_runner
    from infersearch.engines.decode_onnx import onnx_lm_runner
    from infersearch.engines.decode_openvino import openvino_lm_runner

    build = {"onnxruntime": onnx_lm_runner, "openvino": openvino_lm_runner,
             "onnxruntime_genai": genai_lm_runner}[engine]  # fmt: skip
    shape = (2, 2, 1) if engine == "onnxruntime_genai" else (2, 4, 2)  # its attention needs heads of 16 or more
    model, ids = _model(*shape), torch.randint(0, 320, (3, 32), generator=torch.Generator().manual_seed(4))
    runner = build(_model(*shape), QuantPlan(bits, method, "real"),
                   BuildContext("cpu", "fp32", 1, ids[:1], tmp_path, 32, kv_cache="f32"), GenConfig(8, 8))  # fmt: skip
    with torch.no_grad():
        full = model(ids[:, :13]).logits
    at = 8 if engine == "openvino" else 12  # stateful OpenVINO generates from the prompt's end (decode_openvino)
    step = torch.as_tensor(runner.run(runner.prepare(ids)))[:, -1]
    first = torch.as_tensor(runner.prefill(ids))
    if bits == 32:  # the same model: the same logits, step by step through the fed-back cache
        assert torch.allclose(step, full[:, at], atol=1e-4) and torch.allclose(first, full[:, 7], atol=1e-4)
        assert torch.allclose(runner(ids[:, :13]), full, atol=1e-4)
        assert torch.equal(step.argmax(-1), full[:, at].argmax(-1))  # greedy picks the same token
    else:  # int4 weights in groups of 32: close, and a smaller file than the same engine's fp32
        fp32 = build(_model(*shape), FP32, BuildContext("cpu", "fp32", 1, ids[:1], tmp_path / "f", 32), GenConfig(8, 8))
        cos = torch.nn.functional.cosine_similarity(step.flatten(), full[:, at].flatten(), dim=0)
        # smaller: on this toy model NNCF keeps the embeddings (a third of it) int8, so not 8x smaller
        assert cos > 0.98 and runner.size_mb < 0.9 * fp32.size_mb, (cos, runner.size_mb, fp32.size_mb)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["gen.prompt_tokens=0"], "gen: prompt_tokens and new_tokens must be >= 1, got 0, 8"),
        (["engine=onnxruntime", "precision=bf16"], "with onnxruntime for a language model: allowed fp32 on cpu"),
        (["quant.bits=4", "precision=fp32"], "use precision=bf16"),
        (["quant.bits=8", "precision=bf16", "quant.scheme=dynamic"], "allowed weight_only (or auto)"),
        (["quant.group_size=48"], "quant.group_size: 48 is not supported; allowed: 32, 64, 128, 256"),
        (["quant.accuracy_level=3"], "quant.accuracy_level: 3 is not supported; allowed: 1"),
        (["engine=onnxruntime_genai", "precision=bf16"], "with onnxruntime_genai: allowed fp32 on cpu"),
    ],
)
def test_a_bad_language_model_setting_gets_one_line(overrides, expected, tmp_path):
    code, message = refusal(*TINY_LM, f"cache_dir={tmp_path}", *overrides)
    assert code == 2 and expected in message, message


def test_the_genai_builder_is_refused_for_a_model_that_is_not_a_language_model():
    code, message = refusal("engine=onnxruntime_genai")
    assert code == 2 and "onnxruntime_genai builds decoders (language models) only" in message, message


def test_depth_pruning_is_refused_for_a_model_that_is_not_a_language_model():
    code, message = refusal("prune.depth=0.25")
    assert code == 2 and "prune.depth" in message and "not one" in message


def test_counts_of_tokens_are_not_secrets_but_a_token_is():
    out = scrub({"gen": {"prompt_tokens": 64}, "model": {"train_tokens": 10}, "hf_token": "hf_abc", "token": "x"})
    assert out == {"gen": {"prompt_tokens": 64}, "model": {"train_tokens": 10}, "hf_token": "***", "token": "***"}


@pytest.mark.slow
def test_a_language_model_study_measures_ttft_tpot_and_exports_a_model_that_generates(tmp_path, cache_dir):
    out = tmp_path / "lm"
    proc = run_cli("-m", *TINY_LM, f"cache_dir={cache_dir}", "study.name=lm", f"study.output_dir={out}",
                   "study.n_trials=5", "tracking=disabled", "precision=fp32",
                   "engine=choice(eager,onnxruntime,openvino)",
                   "quant.bits=choice(32,4)", "prune.depth=choice(0.0,0.5)",
                   timeout=900)  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    trials = [r for r in read_csv(out / "trials.csv") if r["state"] == "COMPLETE"]
    assert len(trials) == 5
    for r in trials:
        assert float(r["metric.ttft_ms"]) > 0 and float(r["metric.tpot_ms"]) > 0 and float(r["metric.tokens_per_s"]) > 0
        assert float(r["metric.perplexity"]) > 1
    study = load(out, "lm")
    assert study.metric_names == ["perplexity", "tpot_ms"]  # optuna's own tools name the objectives
    assert "TPOT speed-up" in text and "ttft_ms" in text and "perplexity drop" in text
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    formats = ("hf-causal-lm", "hf-config+torchao-state", "onnx-causal-lm", "openvino-causal-lm")
    assert manifest["format"] in formats and "tokenizer.json" in manifest["files"]
    assert manifest["input"] == {"name": "input_ids", "shape": ["batch", "tokens"], "dtype": "int64"}
    # the manifest's own recipe loads it and generates
    scope = {"text": "def main():\n    return"}
    import os

    here = os.getcwd()
    os.chdir(out / "model")
    try:
        exec(manifest["load"], scope)  # noqa: S102 - the recipe the manifest gives its user
    finally:
        os.chdir(here)
    assert scope["y"].shape[1] > len(scope["tok"].encode(scope["text"]).ids)
    prom = (out / "infersearch_lm.prom").read_text()
    assert 'infersearch_sweep_recommended_tpot_seconds{study="lm"}' in prom
    assert 'infersearch_sweep_recommended_ttft_seconds{study="lm"}' in prom


@pytest.mark.slow
def test_a_hugging_face_model_from_a_local_directory(tmp_path, cache_dir):
    from infersearch.models.text import find_corpus, tokenizer

    tok = tokenizer(find_corpus("stdlib"), 320, 100_000, cache_dir)
    model = _model()
    model.save_pretrained(tmp_path / "my-llama")
    tok.save(str(tmp_path / "my-llama" / "tokenizer.json"))
    proc = run_cli("model=hf_causal_lm", f"model.path={tmp_path / 'my-llama'}", "model.train_tokens=4096",
                   "model.eval_tokens=1024", "model.block=32", f"cache_dir={cache_dir}", "tracking=disabled",
                   "gen.prompt_tokens=8", "gen.new_tokens=8", "measure.min_time_s=0.02", "measure.rounds=2",
                   f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads((tmp_path / "run" / "trial.json").read_text())
    assert result["metric"]["name"] == "perplexity" and result["env"]["baseline_source"] == "checkpoint"
    assert result["metrics"]["tpot_ms"] > 0 and "TTFT ms (p50)" in proc.stdout


def test_every_load_recipe_in_a_manifest_is_valid_python():
    from infersearch.engines import FORMATS

    assert {"onnx-causal-lm", "openvino-causal-lm", "hf-causal-lm", "hf-config+torchao-state"} <= set(FORMATS)
    for fmt in FORMATS.values():
        compile(fmt.load_recipe("f32"), fmt.name, "exec")  # a syntax error fails here, not in a user's hands


@pytest.mark.parametrize("kv_cache", ["f16", "u8"])
def test_openvino_keeps_the_kv_cache_in_the_precision_asked_and_the_saved_model_keeps_it(kv_cache, tmp_path):
    import openvino as ov

    from infersearch.engines.decode_openvino import openvino_lm_runner

    model, ids = _model(2, 4, 2), torch.randint(0, 320, (2, 32), generator=torch.Generator().manual_seed(4))
    ctx = BuildContext("cpu", "fp32", 1, ids[:1], tmp_path, 32, kv_cache=kv_cache, int4_ratio=0.5)
    runner = openvino_lm_runner(_model(2, 4, 2), QuantPlan(4, "nncf-int4-weights", "real"), ctx, GenConfig(8, 8))
    with torch.no_grad():
        full = model(ids[:, :9]).logits
    step = torch.as_tensor(runner.run(runner.prepare(ids)))[:, -1]
    cos = torch.nn.functional.cosine_similarity(step.flatten(), full[:, 8].flatten(), dim=0)
    assert cos > 0.98, cos
    assert runner.settings["kv_cache_precision"] == kv_cache and runner.settings["int4_ratio"] == 0.5
    saved = runner.save(tmp_path / "model")
    compiled = ov.Core().compile_model(str(saved.files[0]), "CPU")  # the model's runtime_options carry it
    assert compiled.get_property("KV_CACHE_PRECISION").to_string() == kv_cache
    # a step past new_tokens goes back to the prompt's cache: the same logits as the first step
    state = runner.prepare(ids)
    first = torch.as_tensor(runner.run(state))
    for _ in range(8):
        last = torch.as_tensor(runner.run(state))
    assert torch.allclose(first, last, atol=1e-5)
