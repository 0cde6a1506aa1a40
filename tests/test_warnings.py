"""Each distinct warning prints once per study: Optuna's warnings about this project's own design are
silenced, and a warning raised in every trial's process is shown once, not once per trial."""

from __future__ import annotations

import re
import warnings
from collections import Counter

import pytest

from infersearch.trial.isolation import run_isolated
from tests.conftest import sweep

WARNING_LINE = re.compile(r"\w*Warning\b")


def warns_each_time(n: int) -> int:
    warnings.warn("a library's deprecation notice", FutureWarning, stacklevel=1)
    return n


def test_a_warning_in_every_trial_process_is_shown_once():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert [run_isolated(warns_each_time, n) for n in range(3)] == [0, 1, 2]
    relayed = [w for w in shown if str(w.message) == "a library's deprecation notice"]
    assert [w.category for w in relayed] == [FutureWarning]


@pytest.mark.slow
def test_a_study_prints_no_warning_line_twice(tmp_path, cache_dir):
    args = ["study.n_trials=2", "engine=onnxruntime", "quant.bits=choice(8,32)", "study.max_drop=null", "isolate=true"]
    proc, _ = sweep(tmp_path, cache_dir, "warn", *args, "tracking=disabled")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    lines = Counter(line for line in out.splitlines() if WARNING_LINE.search(line))
    assert not [line for line, n in lines.items() if n > 1], lines
    assert "ExperimentalWarning" not in out and "Heartbeat of storage" not in out
    assert "Performing symbolic shape inference" not in out
