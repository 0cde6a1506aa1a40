"""Each pass on a tiny model, with the real libraries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infersearch.config import Importance, PruneConfig
from infersearch.core.device import capabilities
from infersearch.core.errors import UnsupportedError
from infersearch.models.digits_cnn import DigitsResNet
from infersearch.models.digits_cnn import task as digits_task
from infersearch.passes.prune import footprint, output_layers, prune
from infersearch.passes.quantize import is_quantized_module, plan, quantize


@pytest.fixture(scope="module")
def digits():
    return digits_task(width=16, blocks=1)


@pytest.mark.parametrize("importance", list(Importance))
def test_prune_lowers_macs_and_keeps_output_shape(digits, importance):
    model = DigitsResNet(width=16, blocks=1).eval()
    x = digits.splits.val.take(4)
    before = footprint(model, x[:1])
    out_before = model(x).shape
    calib = digits.splits.train.head(32)
    prune(model, PruneConfig(ratio=0.5, importance=importance, round_to=4), x[:1], calib, digits.loss)
    after = footprint(model, x[:1])
    assert after.macs < 0.5 * before.macs  # channels halve in and out: roughly a quarter of the MACs
    assert after.params < before.params
    assert model(x).shape == out_before
    assert model.fc.out_features == 10
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1]
    assert all(m.out_channels % 4 == 0 and m.out_channels < 32 for m in convs)


def test_output_layer_is_found_and_ignored(digits):
    model = DigitsResNet(width=16, blocks=1).eval()
    assert output_layers(model, digits.example_input(1)) == [model.fc]


def test_int8_runs_on_quantized_kernels_and_stays_close(digits):
    model = DigitsResNet(width=16, blocks=1).eval()
    qplan = plan(8, capabilities("cpu"), "fp32")
    assert qplan.kernel == "real"
    q = quantize(model, qplan, digits.splits.train.take(128))
    kinds = [m for m in q.modules() if is_quantized_module(m)]
    assert len(kinds) >= 5
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in q.modules())
    x = digits.splits.val.take(64)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9


def test_low_bits_on_cpu_are_emulated_and_labelled():
    qplan = plan(4, capabilities("cpu"), "fp32")
    assert qplan.kernel == "emulated" and qplan.emulated


def test_fake_quant_puts_weights_on_the_grid(digits):
    model = DigitsResNet(width=16, blocks=1).eval()
    q = quantize(model, plan(4, capabilities("cpu"), "fp32"), digits.splits.train.take(8))
    w = q.fc.weight
    assert len(torch.unique(w[0])) <= 16
    assert not torch.equal(w, model.fc.weight)  # the copy changed, the original did not


def test_int8_with_half_precision_is_refused_up_front():
    with pytest.raises(UnsupportedError, match="precision"):
        plan(8, capabilities("cpu"), "bf16")
