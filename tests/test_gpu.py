"""The CUDA path. Selection logic runs everywhere (a CUDA device's capabilities as data); the kernels
themselves run only where torch sees a GPU (skipped here, run on a lent H100/H200)."""

from __future__ import annotations

import pytest
import torch

from infersearch.core.device import Capabilities, capabilities, set_tf32
from infersearch.core.errors import UnsupportedError
from infersearch.passes.quantize import plan

H100 = Capabilities("cuda", "NVIDIA H100 80GB HBM3", ("fp32", "fp16", "bf16", "tf32"), True, True, True)
A100 = Capabilities("cuda", "NVIDIA A100", ("fp32", "fp16", "bf16", "tf32"), True, True, False)
NO_TORCHAO = Capabilities("cuda", "NVIDIA H100", ("fp32", "fp16", "bf16", "tf32"), False, False, False)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the lent machine)")


@pytest.mark.parametrize(
    ("caps", "bits", "precision", "scheme", "method", "kernel"),
    [
        (H100, 8, "bf16", "auto", "torchao-int8-dynamic-act-int8-weight", "real"),
        (H100, 8, "bf16", "weight_only", "torchao-int8-weight-only", "real"),
        (H100, 8, "bf16", "float8", "torchao-float8-dynamic", "real"),
        (H100, 4, "bf16", "auto", "torchao-int4-weight-only", "real"),
        (NO_TORCHAO, 8, "fp32", "auto", "fake-quant-int8-weights", "emulated"),
        (NO_TORCHAO, 4, "bf16", "auto", "fake-quant-int4-weights", "emulated"),
    ],
)
def test_cuda_quantization_is_chosen_by_capability(caps, bits, precision, scheme, method, kernel):
    qplan = plan(bits, caps, precision, scheme)
    assert (qplan.method, qplan.kernel) == (method, kernel)


@pytest.mark.parametrize(
    ("caps", "bits", "precision", "scheme", "key"),
    [
        (A100, 8, "bf16", "float8", "quant.scheme"),  # no fp8 before sm_89
        (H100, 4, "fp16", "auto", "precision"),  # int4 kernel runs in bf16
        (capabilities("cpu"), 8, "fp32", "float8", "quant.scheme"),
        (capabilities("cpu"), 8, "fp32", "weight_only", "quant.scheme"),
    ],
)
def test_what_a_device_cannot_run_is_refused(caps, bits, precision, scheme, key):
    with pytest.raises(UnsupportedError) as err:
        plan(bits, caps, precision, scheme)
    assert err.value.key == key


def test_tf32_is_never_silent():
    assert "tf32" not in capabilities("cpu").precisions
    assert set_tf32("cpu", "tf32") is False


@needs_cuda
def test_cuda_trial_times_with_events_and_reports_allocator_peak(make_cfg):
    from infersearch.run import run

    result = run(make_cfg("device=cuda", "precision=bf16", "quant.bits=8", "batch_size=32", "isolate=false"))
    env = result["env"]
    assert env["device"] == "cuda" and env["passes"]["quantize"]["kernel"] == "real"
    assert env["peak_mem_method"] == "cuda-allocator-peak" and result["metrics"]["peak_mem_mb"] > 0
    assert torch.backends.cuda.matmul.allow_tf32 is False


@needs_cuda
def test_cuda_fp32_keeps_tf32_off_and_tf32_turns_it_on(make_cfg):
    from infersearch.run import run

    run(make_cfg("device=cuda", "precision=fp32", "isolate=false"))
    assert torch.backends.cuda.matmul.allow_tf32 is False
    result = run(make_cfg("device=cuda", "precision=tf32", "isolate=false"))
    assert result["env"]["passes"]["precision"]["tf32"] is True
