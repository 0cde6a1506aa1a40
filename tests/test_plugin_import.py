"""Hydra imports every plugin module of every installed package for every app: ours must stay cheap."""

from __future__ import annotations

import json
import subprocess
import sys

SCAN = """
import json, sys, time
t = time.perf_counter()
from hydra.core.plugins import Plugins
from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
sweepers = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
print(json.dumps({
    "seconds": time.perf_counter() - t,
    "sweepers": sweepers,
    "torch": "torch" in sys.modules,
    "infersearch": sorted(m for m in sys.modules if m.startswith("infersearch")),
    "hydra_sweeper_configs": sorted(ConfigStore.instance().repo["hydra"]["sweeper"]),
    "global_configs": sorted(k for k in ConfigStore.instance().repo if k.endswith(".yaml")),
}))
"""


def test_the_plugin_scan_imports_neither_torch_nor_infersearch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCAN], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert {"InfersearchSweeper", "Optuna5Sweeper"} <= set(found["sweepers"])
    assert {"infersearch.yaml", "optuna5.yaml"} <= set(found["hydra_sweeper_configs"])
    assert not found["torch"] and found["infersearch"] == [], found
    assert "base_config.yaml" not in found["global_configs"]  # infersearch's own schema is not registered
