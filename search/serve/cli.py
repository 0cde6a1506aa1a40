"""``infersearch serve [overrides]``: the same Hydra config as the study; ``study.name=...`` serves that
study's exported recommendation, ``serve.model_dir=...`` any export. uvicorn drains in-flight requests
on SIGTERM, then exits."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from infersearch.config import validate
from infersearch.errors import ConfigError


def serve(overrides: list[str]) -> None:
    import uvicorn

    from infersearch.__main__ import to_config
    from infersearch.serve.app import create_app

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        with initialize_config_module("infersearch.conf", version_base="1.3"):
            dcfg = compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(dcfg)  # study.name defaults to the model's choice, a hydra: key
        with open_dict(dcfg):
            del dcfg["hydra"]
        cfg = to_config(dcfg)
        validate(cfg)
        sv = cfg.serve
        model_dir = Path(sv.model_dir or Path(cfg.study.output_dir) / "model")
        threads = sv.threads or max(1, (os.cpu_count() or 1) // sv.workers)
        app = create_app(sv, model_dir, cfg.study.latency_slo_ms, threads)
    except ConfigError as exc:
        print(f"infersearch serve: {exc}", file=sys.stderr)
        sys.exit(2)
    uvicorn.run(app, host=sv.host, port=sv.port, log_level="info", timeout_graceful_shutdown=30)
