"""The commands after a study, run by the front door (search/cli.py) on the study's own config:

- ``infersearch serve``: ``study.name=...`` serves that study's exported recommendation,
  ``serve.model_dir=...`` any export; uvicorn drains in-flight requests on SIGTERM, then exits;
- ``infersearch alerts``: writes the Prometheus rules file derived from the study;
- ``infersearch serve-tune``: searches the serving settings under load (search/serve/tune.py).

Each takes the composed config and the command line's overrides (the keys a user set explicitly win
over serve-tune's pick)."""

from __future__ import annotations

import logging
from pathlib import Path

from infersearch.config import Config
from infersearch.serve.service import service


def serve(cfg: Config, overrides: list[str]) -> None:
    import uvicorn

    from infersearch.serve.app import create_app
    from infersearch.serve.artifact import load
    from infersearch.serve.settings import intra_op_threads

    s = service(cfg, overrides)
    logging.getLogger("infersearch.serve").info("latency SLO %g ms (%s)", s.slo_ms, s.slo_source)
    app = create_app(s.settings, load(s.model_dir, intra_op_threads(s.settings), s.manifest), s.slo_ms)
    uvicorn.run(app, host=s.settings.host, port=s.settings.port, log_level="info", access_log=s.settings.access_log,
                timeout_graceful_shutdown=30)  # fmt: skip


def alerts(cfg: Config, overrides: list[str]) -> None:
    from infersearch.serve.alerts import write_rules

    s = service(cfg, overrides)
    path = write_rules(Path(cfg.alerts.out), cfg.alerts, cfg.study.name, s.slo_ms)
    print(f"alert rules for study {cfg.study.name!r} (latency SLO {s.slo_ms:g} ms, {s.slo_source}) written to {path}")
    print(f"check them with: promtool check rules {path}")


def serve_tune(cfg: Config, overrides: list[str]) -> None:
    from infersearch.serve.tune import tune

    tune(cfg, overrides)
