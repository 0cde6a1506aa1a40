"""``python -m search.report study.name=...``: rebuild a study's report from its storage alone."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from search.errors import ConfigError
from search.study.report import summary_text, write_report
from search.study.storage import open_study
from search.tracking import Tracker

log = logging.getLogger("search.report")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    st = OmegaConf.to_object(cfg.study)
    try:
        study = open_study(st)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    if not study.trials:
        log.error("study.name: study %r has no trials in this storage", st.name)
        sys.exit(2)
    summary = write_report(study, st)
    print(summary_text(summary, st))
    model_dir = Path(st.output_dir) / "model"
    Tracker(OmegaConf.to_object(cfg.tracking), st).log_study(study, summary, model_dir if model_dir.exists() else None)


if __name__ == "__main__":
    main()
