"""The study's baseline is loaded once, in the fork server, and inherited by every trial's process;
a model config with other content gets its own."""

from __future__ import annotations

import subprocess
import sys

import torch

from infersearch.core.cache import TensorCache
from infersearch.trial import preload
from tests.conftest import ROOT

MLP = {"_target_": "infersearch.models.diagnosis_mlp.task", "epochs": 2}

CHILD_SEES_IT = """
import sys
from infersearch.trial import isolation, preload
from tests.test_preload import MLP, held_keys
preload.offer(MLP, sys.argv[1])
print(isolation.run_isolated(held_keys))
"""


def held_keys() -> list[str]:
    """What the trial's process inherited, after a parallel op (OpenMP's pool used before the fork would hang it)."""
    torch.set_num_threads(2)
    torch.ones(256, 256) @ torch.ones(256, 256)
    return sorted(preload._baselines)


def test_same_content_is_loaded_once_and_other_content_loads_its_own(tmp_path):
    cache = TensorCache(tmp_path)
    first = preload.baseline(MLP, cache)
    assert preload.baseline(dict(MLP), cache) is first
    other = preload.baseline(MLP | {"epochs": 3}, cache)
    assert other is not first and other.key != first.key


def test_a_trial_process_inherits_the_fork_servers_baseline(tmp_path):
    proc = subprocess.run(  # a fresh process: its fork server starts after the offer
        [sys.executable, "-c", CHILD_SEES_IT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    key = preload.baseline(MLP, TensorCache(tmp_path)).key
    assert proc.stdout.strip() == str([key])
