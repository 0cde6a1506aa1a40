"""The sampler's own study (infersearch.study.proposals): it learns from what the stored study does not keep."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from infersearch.config import StudyConfig, with_metric
from infersearch.core.optuna_compat import start_trial
from infersearch.study.attrs import TrialAttrs
from infersearch.study.proposals import Proposals, evaluated
from infersearch.study.record import Record, tell

ST = with_metric(StudyConfig(sampler="random", seed=0), "accuracy", "maximize")
DISTS = {"k": IntDistribution(0, 3), "engine": CategoricalDistribution(["eager", "onnxruntime"])}


def stored_study() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"])


def measured(study: optuna.Study, params: dict, values: list[float]) -> optuna.trial.FrozenTrial:
    trial = start_trial(study, params, DISTS, {})
    return tell(study, trial, Record(values, {"max_drop": -0.1}, TrialAttrs(measured=True)))


def test_repeats_and_refusals_reach_the_sampler_but_not_the_stored_study():
    study, proposals = stored_study(), Proposals(ST, DISTS)
    first = measured(study, {"k": 1, "engine": "eager"}, [0.9, 1.0])
    proposals.repeat(proposals.ask(study), first)
    proposals.refuse(proposals.ask(study), "refused")
    mirror = proposals.study.get_trials(deepcopy=False)
    assert [t.state for t in mirror] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert mirror[1].values == first.values and mirror[1].constraints == first.constraints  # the repeat
    assert len(study.trials) == 1 and dict(proposals.tally) == {"repeated": 1, "refused": 1}
    proposals.store_tally(study)
    proposals.store_tally(study)  # nothing new: the counts stay
    assert study.user_attrs["proposals"] == {"repeated": 1, "refused": 1, "in_flight": 0}


def test_sync_copies_other_workers_trials_once_and_skips_untold_ones():
    study, proposals = stored_study(), Proposals(ST, DISTS)
    measured(study, {"k": 2, "engine": "onnxruntime"}, [0.8, 0.5])
    study.tell(start_trial(study, {"k": 3, "engine": "eager"}, DISTS, {}), state=TrialState.PRUNED)  # no record
    proposals.sync(study)
    proposals.sync(study)
    assert len(proposals.study.trials) == 1 and proposals.study.trials[0].params == {"k": 2, "engine": "onnxruntime"}
    launched = proposals.ask(study)
    frozen = measured(study, launched.params, [0.7, 0.4])
    proposals.outcome(launched, frozen)
    proposals.sync(study)  # its own launch is not copied a second time
    assert len(proposals.study.trials) == 2 and len(evaluated(proposals.study)) == 2


def test_a_zero_is_stored_and_what_is_unset_is_not():
    """A hypervolume of 0.0 (the first feasible trial outside the reference point) and a copy of trial 0 are
    values: stored, where an empty error or a False flag is not."""
    stored = TrialAttrs(measured=False, hypervolume=0.0, reused_from=0, error="", rejected=False).stored()
    assert stored == {"measured": False, "hypervolume": 0.0, "reused_from": 0}
