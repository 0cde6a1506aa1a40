"""A library failing inside an engine's step (ONNX's exporter lacking an operator, torch.export refusing a
branch on the data) reaches the user as one line: the step, the engine and the library's message. In a
study, the trial fails with that line and the study goes on: test_faults.py's failure mix."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, run_cli

EXPORT_FAILED = "export failed on onnxruntime: UnsupportedOperatorError: Exporting the operator 'aten::fft_rfft'"
FAST = ["--config-dir", str(ROOT / "tests" / "conf"), "model=awkward", "prune.ratio=0", "tracking=disabled"]
SHORT = ["measure.min_repeats=6", "measure.min_time_s=0.02", "measure.rounds=2", "measure.max_wait_s=2"]


# the exporter prints the whole graph when it fails, torch.export's message runs to many lines: one is kept
SINGLE = [
    (["engine=onnxruntime", "quant.bits=8"], EXPORT_FAILED),
    (["engine=openvino", "quant.bits=32"], "convert failed on openvino: GuardOnDataDependentSymNode: "),
]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "text"), SINGLE, ids=["onnxruntime-int8", "openvino"])
def test_single_run_exits_2_with_one_line(overrides, text, tmp_path, cache_dir):
    proc = run_cli(*FAST, *overrides, f"hydra.run.dir={tmp_path}", f"cache_dir={cache_dir}", *SHORT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out
    assert "graph(" not in out and "def forward" not in out
    [line] = [line for line in out.splitlines() if "failed on" in line]
    assert text in line
    assert len(line) < 300
