"""Weights & Biases, derived from the study: one run per measured trial, one run per sweep.

optuna-integration's ``WeightsAndBiasesCallback`` is not used: it logs only
``trial.params`` and the objective values from inside ``study.optimize``, while
here trials are Hydra jobs told by the sweeper (or recorded by another
sweeper's job) and each run carries the full config, every metric, the
environment, per-epoch recovery history and front membership.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import optuna
from optuna.trial import FrozenTrial, TrialState

from infersearch.config import StudyConfig, TrackingConfig

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _has_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_mode(cfg: TrackingConfig) -> str:
    """``online`` without a key or a network becomes ``offline`` with one warning, quickly."""
    mode = str(cfg.mode)  # a plain str for wandb.init
    if mode != "online":
        return mode
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    reason = "no W&B API key" if not _has_key(host) else None if _reachable(host, port) else f"{host} unreachable"
    if reason is None:
        return "online"
    if reason not in _warned:
        _warned.add(reason)
        log.warning("tracking.mode=online but %s: logging offline; upload later with `wandb sync`", reason)
    return "offline"


def run_id(study: str, number: int) -> str:
    """Stable and unique per study and trial: a re-run never duplicates an old trial's run."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{study}-trial-{number:05d}")[:120]


class Tracker:
    def __init__(self, cfg: TrackingConfig, st: StudyConfig) -> None:
        self.cfg, self.st = cfg, st
        self.mode = resolve_mode(cfg)

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    def _init(self, **kwargs: Any):
        import wandb

        Path(self.cfg.dir).mkdir(parents=True, exist_ok=True)
        return wandb.init(
            mode=self.mode,
            project=self.cfg.project,
            entity=self.cfg.entity,
            tags=list(self.cfg.tags),
            dir=self.cfg.dir,
            group=self.st.name,
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", save_code=False, x_disable_stats=True),
            **kwargs,
        )

    def _safely(self, what: str, fn, *args) -> None:
        if not self.enabled:
            return
        try:
            fn(*args)
        except Exception as exc:  # tracking never fails the study
            log.warning("W&B: could not log %s: %s: %s", what, type(exc).__name__, exc)

    def pause(self) -> None:
        """Stop W&B's service (the ``wandb-core`` process and the client's threads outlive ``finish``)
        before the sweeper times anything itself; the next run starts it again."""
        wandb = sys.modules.get("wandb")
        if wandb is not None:
            self._safely("(stopping the service)", wandb.teardown)

    def log_trial(self, trial: FrozenTrial, on_front: bool) -> None:
        """Log one trial's run, then stop the service: the next trial's latency rounds run while the
        sweeper waits, and an idle ``wandb-core`` beside them still disturbed them
        (benchmarks/wandb_disturbance.py); restarting it costs about 0.3 s between trials."""
        self._safely(f"trial {trial.number}", self._log_trial, trial, on_front)
        self.pause()

    def _log_trial(self, trial: FrozenTrial, on_front: bool) -> None:
        from infersearch.study.attrs import attrs_of
        from infersearch.study.pareto import feasible

        a = attrs_of(trial)
        run = self._init(
            id=run_id(self.st.name, trial.number),
            name=f"{self.st.name}-trial-{trial.number}",
            job_type="trial",
            config={"params": dict(trial.params), **a.config},
        )
        for epoch, loss in enumerate(a.history.get("recover_loss", [])):
            run.log({"recover/epoch": epoch, "recover/loss": loss})
        env = a.env
        run.summary.update(
            {
                **a.metrics,
                "trial": trial.number,
                "state": trial.state.name,
                "on_front": on_front,
                "feasible": feasible(trial),
                "constraints": dict(trial.constraints),
                "hypervolume": a.hypervolume,
                "kernels": "emulated" if a.emulated else "real",
                "env": {k: env.get(k) for k in ("device", "device_name", "torch", "threads", "engine", "passes")},
                "baseline": a.baseline,
                "error": a.error,
            }
        )
        run.finish()

    def log_study(self, study: optuna.Study, summary, model_dir: Path | None) -> None:
        self._safely("the study run", self._log_study, study, summary, model_dir)

    def _log_study(self, study: optuna.Study, summary, model_dir: Path | None) -> None:
        import wandb

        from infersearch.report.files import front_rows, trial_rows
        from infersearch.study.attrs import attrs_of
        from infersearch.study.record import counts

        run = self._init(name=f"{self.st.name}-study", job_type="study", config={"study": self.st.name})
        measured = [t for t in study.get_trials(deepcopy=False) if counts(t)]
        for t in measured:
            if t.state == TrialState.COMPLETE:
                run.log({"trial": t.number, "hypervolume": attrs_of(t).hypervolume or 0.0})
        trials = _table(trial_rows(study, self.st))
        log_items = {"trials": trials, "pareto_front": _table(front_rows(summary, self.st))}
        quality = self.st.objectives[0].metric  # the model's metric, under its own name (config.with_metric)
        speed = self.st.objectives[-1].metric  # latency per sample, or a language model's TPOT
        if len(self.st.objectives) > 1 and {f"metric.{speed}", f"metric.{quality}"} <= set(trials.columns):
            log_items[f"{quality}_vs_latency"] = wandb.plot.scatter(
                trials, f"metric.{speed}", f"metric.{quality}", title=f"{quality} against {speed}"
            )
        run.log(log_items)
        rec = summary.recommended
        run.summary.update(
            {
                "n_trials": summary.n_trials,
                "n_failed": summary.n_failed,
                "front_size": len(summary.front),
                "proposals": summary.proposals,  # what the sampler proposed that was not stored
                "recommendation": _recommendation(rec, summary),
                "machine_busy": summary.busy,  # "" when every trial was timed on a settled machine
            }
        )
        if model_dir is not None and (model_dir / "manifest.json").exists():
            import json

            manifest = json.loads((model_dir / "manifest.json").read_text())
            artifact = wandb.Artifact(
                re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.st.name}-recommended"),
                type="model",
                metadata={k: manifest[k] for k in ("format", "trial", "params", "metrics", "config", "files")},
            )
            artifact.add_dir(str(model_dir))
            run.log_artifact(artifact)
        run.finish()

    def log_serving(self, doc: dict[str, Any]) -> None:
        self._safely("the serve-tune run", self._log_serving, doc)
        self.pause()

    def _log_serving(self, doc: dict[str, Any]) -> None:
        """serve-tune's table, and p99 against the offered rate, one line per setting."""
        import wandb

        run = self._init(name=f"{self.st.name}-serve-tune", job_type="serve-tune", config={"study": self.st.name})
        curves = doc["curves"]
        keys = [" ".join(f"{k}={v}" for k, v in c["setting"].items()) for c in curves]
        xs = [[point["offered_rps"] for point in c["loads"]] for c in curves]
        ys = [[point["server_p99_ms"] for point in c["loads"]] for c in curves]
        chart = wandb.plot.line_series(xs, ys, keys, title="p99 latency (served) against load", xname="requests/s")
        items = {"serving": _table(doc["results"]), "p99_vs_load": chart}
        if doc.get("top"):  # serve-tune's top-N table and its figure (search/serve/tune_report.py)
            items["serving_top"] = _table(doc["top"])
        figure = (doc.get("files") or {}).get("figure")
        if figure and Path(figure).is_file():
            items["p99_vs_load_png"] = wandb.Image(figure, caption="p99 against offered load per setting, SLO dashed")
        run.log(items)
        run.summary.update({"pick": doc["pick"], "slo_ms": doc["slo_ms"], "target_rps": doc["target_rps"]})
        run.finish()


def _table(rows: list[dict[str, Any]]):
    import wandb

    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    data = [[_cell(r.get(c)) for c in columns] for r in rows]
    return wandb.Table(columns=columns or ["empty"], data=data, allow_mixed_types=True)


def _cell(v: Any) -> Any:
    if v == "" or v is None:
        return None
    return v if isinstance(v, (int, float, str, bool)) else str(v)


def _recommendation(rec, summary) -> dict[str, Any] | None:
    """The recommendation as the study reports it: params, the latency it stands behind, whether disturbed."""
    from infersearch.study.attrs import attrs_of
    from infersearch.study.figures import timed

    if rec is None:
        return None
    figures = summary.figures.get(str(rec.number), {})
    keys = ("latency_ms_per_sample", "latency_ms_p95", "speedup_vs_baseline", "tpot_ms", "ttft_ms", "tokens_per_s")
    return (
        {"trial": rec.number, "rule": summary.rule, **attrs_of(rec).params}
        | {k: figures[k] for k in keys if k in figures}
        | {"disturbed": bool(figures.get("machine_disturbed")), "confirmed": timed(figures) == "confirmed"}
    )
