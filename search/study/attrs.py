"""The trial record: the user attributes infersearch stores on each trial, defined once.

The records (record.py) are built as :class:`TrialAttrs` and stored with :meth:`TrialAttrs.stored`, which
leaves out what is unset, so plain Optuna tools show no empty keys. The sweeper, the reports, W&B, export
and the regression check read a stored trial through :func:`attrs_of`, never by key."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from optuna.trial import FrozenTrial


@dataclass
class TrialAttrs:
    # True: the trial used budget (completed, failed, or rejected early); False: refused before any work;
    # None: no record (a trial whose worker died before telling it)
    measured: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the variant's parameters, flat: prune_ratio, ...
    metric: dict[str, Any] = field(default_factory=dict)  # the model's metric: name, direction, proportion
    metrics: dict[str, Any] = field(default_factory=dict)  # every figure trial.json has, by name
    baseline: dict[str, Any] = field(default_factory=dict)  # the same figures for the unmodified model
    env: dict[str, Any] = field(default_factory=dict)  # device, versions, engine settings, passes, emulated
    timings_s: dict[str, float] = field(default_factory=dict)  # seconds per step
    history: dict[str, Any] = field(default_factory=dict)  # recover_loss per epoch
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config, credentials masked: rebuilds it
    overrides: list[str] = field(default_factory=list)  # the job's overrides: reproduce it on the command line
    hypervolume: float | None = None  # of the feasible front with this trial
    error: str = ""  # one line: the step and the library's message
    rejected: bool = False  # stopped early: cannot meet study.max_drop
    refused: bool = False  # not launched: refused on this device, or over the budget
    over_budget: bool = False  # asked when another worker had taken the budget's last place
    warm_start: bool = False  # one of the warm start's seeds
    launched_by: str = ""  # the sweeper of a job that started its own trial (not infersearch's)
    reused_from: int | None = None  # a copy of an earlier trial (studies stored before one trial per configuration)

    @property
    def emulated(self) -> bool:
        """Fake-quant: its latency is no kernel's speed-up."""
        return bool(self.env.get("emulated"))

    def stored(self) -> dict[str, Any]:
        """The attributes to store: the set ones (a hypervolume of 0.0, a copy of trial 0 are set), and
        ``measured`` whenever the trial has a record."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not _unset(value) or (f.name == "measured" and value is not None):
                out[f.name] = value
        return out


def _unset(value: Any) -> bool:
    """None, False or an empty text, dict or list; a number, 0 included, is a value."""
    return value is None or value is False or (isinstance(value, (str, dict, list)) and not value)


NAMES = frozenset(f.name for f in fields(TrialAttrs))


def attrs_of(t: FrozenTrial) -> TrialAttrs:
    """A stored trial's record; keys it does not know (a user's own) are left out."""
    return TrialAttrs(**{k: v for k, v in t.user_attrs.items() if k in NAMES and v is not None})
