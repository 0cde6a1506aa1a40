"""Transformers, for real, on tiny configs: whole heads and feed-forward channels pruned with the
residual width kept (the zoo encoder, a Hugging Face BERT, torch's nn.TransformerEncoder), each engine's
int8 scheme built and agreeing with PyTorch or refused in one line, and an export that reloads equal."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from optuna.trial import create_trial

from infersearch.compose import to_config
from infersearch.config import PruneConfig
from infersearch.core.device import capabilities
from infersearch.core.errors import UnsupportedError
from infersearch.engines.onnx_export import export_onnx
from infersearch.engines.onnxruntime_engine import _transformer_fusions
from infersearch.models.digits_transformer import DigitsTransformer
from infersearch.passes.architecture import attention_modules, is_transformer
from infersearch.passes.prune import prune
from infersearch.study.export import export_trial
from infersearch.study.record import canonical
from infersearch.trial.evaluate import build, check
from tests.conftest import CONF, ROOT, TINY
from tests.hf_bert import DigitsBert
from tests.transformer import DigitsEncoder

SMALL = ["model.d_model=32", "model.layers=1", "model.ff=64", "model.epochs=30", "prune.round_to=8"]
TESTS_CONF = str(ROOT / "tests" / "conf")


@pytest.fixture
def compose_model(cache_dir):
    shared = [o for o in TINY if not o.startswith(("model.", "prune.round_to"))]

    def make(model: str, *overrides: str):
        extra = SMALL if model == "digits_transformer" else []
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            args = [f"model={model}", *shared, *extra, f"cache_dir={cache_dir}", "study.name=t", *overrides]
            if model == "hf_bert":
                args = ["hydra.searchpath=[file://" + TESTS_CONF + "]", *args]
            return compose("config", overrides=args)

    return make


def _heads_and_width(model):
    return [(m.num_attention_heads, m.query.out_features) for m in attention_modules(model)]


@pytest.mark.parametrize("make", [lambda: DigitsTransformer(32, 4, 2, 64), lambda: DigitsBert(32, 4, 2, 64)])
def test_pruning_removes_whole_heads_and_feed_forward_channels_and_keeps_the_residual_width(make):
    model = make().eval()
    x = torch.rand(3, 16, 4)
    assert is_transformer(model) and _heads_and_width(model) == [(4, 32), (4, 32)]
    prune(model, PruneConfig(ratio=0.5), x)
    assert _heads_and_width(model) == [(2, 16), (2, 16)]  # two heads of width 8 left, not four of width 4
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sorted({m.out_features for m in linears if m.in_features == 32}) == [10, 16, 32]  # ffn 64 -> 32
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.normalized_shape == (32,) for m in norms)
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_torch_transformer_encoder_keeps_its_attention_and_prunes_the_feed_forward():
    model = DigitsEncoder(32, 4, 2).eval()
    prune(model, PruneConfig(ratio=0.5), torch.rand(2, 8, 8))
    layer = model.encoder.layers[0]
    assert layer.self_attn.embed_dim == 32 and layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 32  # 64 -> 32
    assert model(torch.rand(2, 8, 8)).shape == (2, 10)


SCHEMES = [
    ("eager", "dynamic", "torch-dynamic-int8-linear"),
    ("eager", "static", "torch-x86-static-int8"),
    ("onnxruntime", "dynamic", "onnxruntime-quantize_dynamic-int8"),
    ("onnxruntime", "static", "onnxruntime-quantize_static-qdq-int8"),
    ("openvino", "static", "nncf-quantize-int8"),
    ("openvino", "weight_only", "nncf-compress-weights-int8"),
]


@pytest.mark.parametrize(("engine", "scheme", "method"), SCHEMES, ids=[f"{e}-{s}" for e, s, _ in SCHEMES])
def test_each_engine_builds_its_int8_schemes_on_the_zoo_transformer(compose_model, engine, scheme, method):
    cfg = compose_model("digits_transformer", f"engine={engine}", "quant.bits=8", f"quant.scheme={scheme}")
    b = build(to_config(cfg), cfg.model)
    assert b.qplan.method == method and b.qplan.kernel == "real"
    assert b.agreement["label_agreement"] >= 0.9, b.agreement


def test_onnxruntime_fuses_the_transformer_graph(compose_model):
    cfg = compose_model("digits_transformer", "engine=onnxruntime")
    fused = build(to_config(cfg), cfg.model).runner.settings["transformer_fusions"]
    assert fused.get("SkipLayerNormalization", 0) >= 1 and fused.get("BiasGelu", 0) >= 1, fused
    assert fused.get("Attention", 0) == 1, fused  # SMALL has one layer


@pytest.mark.parametrize("pruned", [False, True], ids=["whole", "heads-pruned"])
def test_the_fused_attention_graph_computes_what_pytorch_does(tmp_path, pruned):
    torch.manual_seed(0)
    model = DigitsTransformer(32, 4, 2, 64).eval()
    for p in model.parameters():  # away from the initial ones and zeros, which the exporter would share
        torch.nn.init.normal_(p, std=0.3)
    x = torch.rand(5, 16, 4)
    if pruned:
        prune(model, PruneConfig(ratio=0.5), x)  # two heads of width 8: the fusion must read the new count
    path, fused = _transformer_fusions(export_onnx(model, x[:1], tmp_path / "m.onnx"), tmp_path / "m.opt.onnx")
    assert fused.get("Attention", 0) == 2, fused
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Softmax" not in ops and "Attention" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, rtol=1e-4, atol=1e-4)


REFUSED = [
    ("openvino", "dynamic", "allowed static, weight_only"),
    ("onnxruntime", "weight_only", "allowed static, dynamic"),
    ("eager", "weight_only", "allowed static, dynamic"),
]


@pytest.mark.parametrize(("engine", "scheme", "allowed"), REFUSED)
def test_a_scheme_an_engine_lacks_is_refused_in_one_line(compose_model, engine, scheme, allowed):
    cfg = compose_model("digits_transformer", f"engine={engine}", "quant.bits=8", f"quant.scheme={scheme}")
    with pytest.raises(UnsupportedError) as err:
        check(to_config(cfg))
    assert err.value.key == "quant.scheme" and allowed in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif("bf16" not in capabilities("cpu").notes.get("not_native", []), reason="this CPU has bf16")
def test_bf16_is_refused_where_the_cpu_has_no_native_bf16(compose_model):
    with pytest.raises(UnsupportedError, match="no native bf16 instructions"):
        check(to_config(compose_model("digits_transformer", "precision=bf16")))


def test_the_transformer_entry_searches_the_scheme_and_a_float_trial_ignores_it(compose_model):
    space = OmegaConf.to_container(compose_model("digits_transformer").space)
    assert space["quant"]["scheme"] == "choice(dynamic, static, weight_only)"
    assert "compile" in space["engine"]
    float_static = {"quant.bits": 32, "quant.scheme": "static", "engine": "eager"}
    assert canonical(float_static) == canonical(float_static | {"quant.scheme": "dynamic"})
    assert canonical(float_static | {"quant.bits": 8}) != canonical({"quant.bits": 8, "quant.scheme": "dynamic"})


@pytest.mark.slow  # the longest in-process test: a BERT pruned, quantized, exported, reloaded
def test_hugging_face_bert_prunes_quantizes_and_exports_to_a_file_that_reloads_equal(compose_model, tmp_path):
    cfg = compose_model("hf_bert", "engine=onnxruntime", "quant.bits=8", "quant.scheme=dynamic", "prune.ratio=0.5")
    b = build(to_config(cfg), cfg.model)
    assert _heads_and_width(b.reference) == [(2, 16)]
    assert b.runner.settings["transformer_fusions"] and b.agreement["label_agreement"] >= 0.9, b.agreement
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    trial = create_trial(
        values=[1.0], user_attrs={"config": config, "params": {}, "metrics": {}, "env": {"engine": b.runner.settings}}
    )
    out = export_trial(trial, tmp_path)
    assert json.loads((out / "manifest.json").read_text())["format"] == "onnx"
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = b.task.splits.val.take(32)
    reloaded = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_array_equal(reloaded, b.runner(x).numpy())


def test_zoo_transformer_exported_by_openvino_reloads_to_equal_outputs(compose_model, tmp_path):
    import openvino as ov

    cfg = compose_model("digits_transformer", "engine=openvino", "quant.bits=8", "quant.scheme=weight_only")
    b = build(to_config(cfg), cfg.model)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    trial = create_trial(
        values=[1.0], user_attrs={"config": config, "params": {}, "metrics": {}, "env": {"engine": b.runner.settings}}
    )
    out = export_trial(trial, tmp_path)
    hint = b.runner.settings["precision_hint"]
    compiled = ov.Core().compile_model(str(out / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    x = b.task.splits.val.take(32)
    np.testing.assert_allclose(compiled(x.numpy())[0], b.runner(x).numpy(), rtol=1e-5, atol=1e-6)
