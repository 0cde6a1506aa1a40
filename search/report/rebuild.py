"""``infersearch report study.name=...``: rebuild a study's report from its storage alone."""

from __future__ import annotations

from pathlib import Path

import optuna

from infersearch.config import Config, StudyConfig, with_metric
from infersearch.core.errors import ConfigError
from infersearch.core.secrets import mask_url
from infersearch.report.files import summary_text, write_report
from infersearch.report.tracking import Tracker
from infersearch.study.attrs import attrs_of
from infersearch.study.storage import make_storage, open_study, quiet_design_warnings, storage_url


def report(cfg: Config, overrides: list[str]) -> None:
    """Every report file of ``study.name`` rebuilt from storage; refuses a study with no trials."""
    st = with_metric(cfg.study, *stored_metric(cfg.study))
    study = open_study(st)
    if not study.trials:
        raise ConfigError("study.name", f"study {st.name!r} has no trials in this storage")
    summary = write_report(study, st)
    print(summary_text(summary, st))
    model_dir = Path(st.output_dir) / "model"
    Tracker(cfg.tracking, st).log_study(study, summary, model_dir if model_dir.exists() else None)


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
