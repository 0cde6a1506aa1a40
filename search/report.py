"""``python -m infersearch.report study.name=...``: rebuild a study's report from its storage alone."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import optuna
from omegaconf import DictConfig, OmegaConf

from infersearch.config import StudyConfig, with_metric
from infersearch.errors import ConfigError
from infersearch.secrets import mask_url
from infersearch.study.attrs import attrs_of
from infersearch.study.report import summary_text, write_report
from infersearch.study.storage import make_storage, open_study, quiet_design_warnings, storage_url
from infersearch.tracking import Tracker

log = logging.getLogger("infersearch.report")


@hydra.main(version_base="1.3", config_path="pkg://infersearch.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    st = OmegaConf.to_object(cfg.study)
    try:
        st = with_metric(st, *stored_metric(st))
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


def stored_metric(st: StudyConfig) -> tuple[str, str, bool]:
    """The model's metric (name, direction) as the sweeper (or a recorded trial) stored it in the study;
    accuracy for studies recorded before metrics had names."""
    url = storage_url(st)
    quiet_design_warnings()  # the storage's heartbeat is experimental in Optuna, and used here on purpose
    try:
        study = optuna.load_study(study_name=st.name, storage=make_storage(url, st))
    except KeyError:  # no such study: open_study creates it empty, and main says so
        return "accuracy", "maximize", False
    except Exception as exc:
        raise ConfigError("study.storage", mask_url(f"cannot open {url}: {type(exc).__name__}: {exc}")) from exc
    recorded = (m for t in study.get_trials(deepcopy=False) if (m := attrs_of(t).metric))
    metric = study.user_attrs.get("metric") or next(recorded, {"name": "accuracy", "direction": "maximize"})
    return metric["name"], metric["direction"], bool(metric.get("generation"))


if __name__ == "__main__":
    main()
