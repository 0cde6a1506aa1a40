"""``python -m infersearch.report study.name=...``: rebuild a study's report from its storage alone."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from infersearch.errors import ConfigError
from infersearch.study.report import summary_text, write_report
from infersearch.study.storage import open_study
from infersearch.tracking import Tracker
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("infersearch.report")


@hydra.main(version_base="1.3", config_path="pkg://infersearch.conf", config_name="config")
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
