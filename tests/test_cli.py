"""The real command line in a subprocess: trial.json; and one clear line for bad input, checked in process
(tests/conftest.py's refusal; test_faults.py runs a few through the command line for the exit status and
the no-traceback rule)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY, refusal, run_cli

METRICS = [
    "accuracy",
    "test_accuracy",
    "accuracy_drop",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_per_sample",
    "throughput_per_s",
    "latency_cv",
    "size_mb",
    "params",
    "macs",
    "peak_mem_mb",
]


@pytest.mark.slow
def test_cli_writes_a_valid_trial_json(tmp_path, cache_dir):
    out = tmp_path / "run"
    proc = run_cli(
        *TINY, f"cache_dir={cache_dir}", "prune.ratio=0.5", "quant.bits=8", "batch_size=8", f"hydra.run.dir={out}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "baseline (fp32 eager)" in proc.stdout
    result = json.loads((out / "trial.json").read_text())
    assert result["params"] == {
        "prune_ratio": 0.5,
        "prune_importance": "l2",
        "quant_bits": 8,
        "quant_scheme": "auto",
        "precision": "fp32",
        "batch_size": 8,
        "engine": "eager",
    }
    m = result["metrics"]
    assert set(METRICS) <= set(m)
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["test_accuracy"] <= 1
    assert m["latency_ms_p95"] >= m["latency_ms_p50"] > 0
    assert m["latency_ms_per_sample"] == pytest.approx(m["latency_ms_p50"] / 8)
    assert m["macs"] < result["baseline"]["macs"]
    assert m["size_mb"] < result["baseline"]["size_mb"]
    env = result["env"]
    assert env["device"] == "cpu" and env["threads"] >= 1 and env["torch"]
    assert env["passes"]["quantize"] == {"applied": True, "method": "torch-x86-static-int8", "kernel": "real"}
    assert env["emulated"] is False
    assert result["config"]["prune"]["ratio"] == 0.5


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("prune.ratio=1.5", "prune.ratio", "0 to 0.9"),
        ("precision=fp64", "precision", "fp32, bf16, fp16, tf32"),
        ("batch_size=0", "batch_size", "positive"),
        ("quant.bits=3", "quant.bits", "32, 8, 4"),
        ("model=nope", "model", "digits_cnn"),
        ("prnue.ratio=0.5", "prnue", "not in 'Config'"),
        ("batch_size=abc", "batch_size", "Integer"),
        ("precision=bf16 quant.bits=8", "precision", "use precision=fp32"),
    ],
)
def test_bad_input_gives_one_clear_line(override, key, allowed):
    status, err = refusal(*override.split(), "cache_dir=/nonexistent/never-used")
    assert status != 0
    assert key in err and allowed in err
