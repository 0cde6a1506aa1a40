"""What ``infersearch serve`` would run for a config: the export, its checked manifest, the settings and the
SLO. serve, alerts and serve-tune all start here (search/serve/cli.py, search/serve/tune.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from infersearch.config import Config, ServeConfig


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
    """``tuned``: take serve-tune's pick for this artifact (search/serve/settings.py), except for the keys
    ``overrides`` sets."""
    from infersearch.serve.artifact import digest, read_manifest
    from infersearch.serve.settings import slo_ms, with_tuned

    model_dir = model_dir_of(cfg)
    manifest = read_manifest(model_dir)
    sv = with_tuned(cfg.serve, model_dir, digest(manifest), overrides) if tuned else cfg.serve
    slo, source = slo_ms(replace(cfg, serve=sv), manifest)
    return Service(model_dir, manifest, sv, slo, source)
