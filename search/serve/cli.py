"""The commands after a study, with the same Hydra config and overrides as the study itself:

- ``infersearch serve``: ``study.name=...`` serves that study's exported recommendation,
  ``serve.model_dir=...`` any export; uvicorn drains in-flight requests on SIGTERM, then exits;
- ``infersearch alerts``: writes the Prometheus rules file derived from the study;
- ``infersearch serve-tune``: searches the serving settings under load (search/serve/tune.py).

``--config-dir DIR`` adds a folder of the user's own configs, as it does for the study."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import open_dict
from omegaconf.errors import OmegaConfBaseException

from infersearch.config import Config, ServeConfig, validate
from infersearch.errors import ConfigError


def compose_config(overrides: list[str]) -> Config:
    """The validated config the study would run with (``--config-dir`` included)."""
    from infersearch.__main__ import to_config

    overrides = list(overrides)
    if "--config-dir" in overrides:
        i = overrides.index("--config-dir")
        if i + 1 >= len(overrides):
            raise ConfigError("--config-dir", "needs a folder")
        folder = Path(overrides.pop(i + 1)).resolve()
        overrides.pop(i)
        if not folder.is_dir():
            raise ConfigError("--config-dir", f"{folder} is not a folder")
        overrides.insert(0, f"hydra.searchpath=[file://{folder}]")
    with initialize_config_module("infersearch.conf", version_base="1.3"):
        dcfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(dcfg)  # study.name defaults to the model's choice, a hydra: key
    with open_dict(dcfg):
        del dcfg["hydra"]
    cfg = to_config(dcfg)
    validate(cfg)
    return cfg


def model_dir_of(cfg: Config) -> Path:
    return Path(cfg.serve.model_dir or Path(cfg.study.output_dir) / "model")


@dataclass
class Service:
    """What ``infersearch serve`` would run: the export, its checked manifest, the settings and the SLO."""

    model_dir: Path
    manifest: dict
    settings: ServeConfig
    slo_ms: float
    slo_source: str


def service(cfg: Config, overrides: list[str], tuned: bool = True) -> Service:
    """``tuned``: take serve-tune's pick for this artifact (search/serve/settings.py)."""
    from infersearch.serve.artifact import digest, read_manifest
    from infersearch.serve.settings import slo_ms, with_tuned

    model_dir = model_dir_of(cfg)
    manifest = read_manifest(model_dir)
    sv = with_tuned(cfg.serve, model_dir, digest(manifest), overrides) if tuned else cfg.serve
    slo, source = slo_ms(replace(cfg, serve=sv), manifest)
    return Service(model_dir, manifest, sv, slo, source)


def serve(overrides: list[str]) -> None:
    import uvicorn

    from infersearch.serve.app import create_app
    from infersearch.serve.artifact import load
    from infersearch.serve.settings import intra_op_threads

    s = service(compose_config(overrides), overrides)
    logging.getLogger("infersearch.serve").info("latency SLO %g ms (%s)", s.slo_ms, s.slo_source)
    app = create_app(s.settings, load(s.model_dir, intra_op_threads(s.settings), s.manifest), s.slo_ms)
    uvicorn.run(app, host=s.settings.host, port=s.settings.port, log_level="info", access_log=s.settings.access_log,
                timeout_graceful_shutdown=30)  # fmt: skip


def alerts(overrides: list[str]) -> None:
    from infersearch.serve.alerts import write_rules

    cfg = compose_config(overrides)
    s = service(cfg, overrides)
    path = write_rules(Path(cfg.alerts.out), cfg.alerts, cfg.study.name, s.slo_ms)
    print(f"alert rules for study {cfg.study.name!r} (latency SLO {s.slo_ms:g} ms, {s.slo_source}) written to {path}")
    print(f"check them with: promtool check rules {path}")


def serve_tune(overrides: list[str]) -> None:
    from infersearch.serve.tune import tune

    tune(compose_config(overrides), overrides)


COMMANDS: dict[str, Callable[[list[str]], None]] = {"serve": serve, "alerts": alerts, "serve-tune": serve_tune}


def main(command: str, overrides: list[str]) -> None:
    """Run ``command``; bad input is one line and exit 2."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request of serve-tune's load
    try:
        COMMANDS[command](overrides)
    except (ConfigError, HydraException, OmegaConfBaseException) as exc:
        print(f"infersearch {command}: {_unparsable(overrides)}{str(exc).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


def _unparsable(overrides: list[str]) -> str:
    """``override '<the first that Hydra cannot parse>': `` or nothing (Hydra's message does not say which)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for i, o in enumerate(overrides):
        if o.startswith("--") or (i > 0 and overrides[i - 1] == "--config-dir"):
            continue
        try:
            parser.parse_overrides([o])
        except HydraException:
            return f"override {o!r}: "
    return ""
