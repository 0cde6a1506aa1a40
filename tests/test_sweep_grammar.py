"""The one sweep grammar (search/study/space.py) and what else both sweepers share (search/study/sweep.py),
each form read through both sweepers' own entry points: infersearch's (the ``space`` config group, then the
command line) and ``optuna5``'s (``hydra.sweeper.params``, then the command line)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import GridSampler

from hydra_plugins.infersearch_sweeper._impl import InfersearchSweeperImpl
from hydra_plugins.infersearch_sweeper._optuna5 import Optuna5SweeperImpl
from hydra_plugins.infersearch_sweeper.samplers import SAMPLERS, GridSamplerConfig
from infersearch.config import SamplerName, StudyConfig
from infersearch.core.errors import ConfigError
from infersearch.study.space import Space
from infersearch.study.storage import make_sampler
from infersearch.study.sweep import MIN_JUDGED, FailureRate
from infersearch.study.sweep import make_sampler as sweep_sampler
from tests.conftest import crashy_sweep
from tests.test_optuna5_sweeper import run_app


def infersearch_space(config: dict, arguments: list[str]) -> Space:
    impl = InfersearchSweeperImpl()
    impl.config = OmegaConf.create({"space": config})
    return impl.space(arguments)


def optuna5_space(config: dict, arguments: list[str]) -> Space:
    return Optuna5SweeperImpl(sampler=None, params=config).space(arguments)


SWEEPERS = {"infersearch": infersearch_space, "optuna5": optuna5_space}


def read(sweeper: str, where: str, grammar: str) -> Space:
    """``key=grammar`` as the sweeper's config gives it, or as the command line does."""
    if where == "config":
        return SWEEPERS[sweeper]({"key": grammar}, [])
    return SWEEPERS[sweeper]({}, [f"key={grammar}"])


both = pytest.mark.parametrize("sweeper, where", [(s, w) for s in SWEEPERS for w in ("config", "command line")])

# range() reads as Hydra's own grid sweep runs it: stop excluded, step 1 when omitted, a negative step
# counting down to the same values (hydra-optuna-sweeper's IntDistribution(1, 3) for range(1,3) offered 3)
FORMS = [
    ("choice(1,2)", CategoricalDistribution([1, 2])),
    ("1,2", CategoricalDistribution([1, 2])),
    ("choice(true, false)", CategoricalDistribution([True, False])),
    ("choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
    ("choice('a,b', 'c d', \"it's\")", CategoricalDistribution(["a,b", "c d", "it's"])),
    ("shuffle(b, a)", CategoricalDistribution(["b", "a"])),  # the order as written: a resumed study matches
    ("shuffle(range(1,3))", CategoricalDistribution([1, 2])),
    ("range(1,3)", IntDistribution(1, 2)),
    ("range(1,10,step=3)", IntDistribution(1, 7, step=3)),
    ("range(5,1,-1)", IntDistribution(2, 5)),
    ("range(0.5, 3)", FloatDistribution(0.5, 2.5, step=1)),
    ("range(0.5, 5.5, step=1)", FloatDistribution(0.5, 4.5, step=1)),
    ("range(0, 1, 0.25)", FloatDistribution(0, 0.75, step=0.25)),
    ("interval(1, 5)", FloatDistribution(1, 5)),
    ("int(interval(1, 5))", IntDistribution(1, 5)),
    ("tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
    ("tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
    ("tag(log, coarse, interval(1, 5))", FloatDistribution(1, 5, log=True)),  # tags other than log: ignored
]


@both
@pytest.mark.parametrize("grammar, expected", FORMS)
def test_each_form_is_one_distribution_in_both_sweepers(sweeper, where, grammar, expected):
    space = read(sweeper, where, grammar)
    assert space.dists == {"key": expected} and space.fixed == {}


ERRORS = [
    ("tag(log, range(1,4))", "key: tag(log, ...) takes interval(low, high), not tag(log, range(1,4))"),
    ("tag(log, choice(1,2))", "key: tag(log, ...) takes interval(low, high), not tag(log, choice(1,2))"),
    ("range(3,1)", "key: range(3, 1, 1) has no values; allowed: a stop past the start"),
    ("choice([1,2],[3])", "key: a choice takes str, int, float or bool values, not [1, 2]"),
    ("interval(5, 1)", "key: `low <= high` must hold, but got (low=5.0, high=1.0)."),
    ("tag(log, interval(0, 1))", "key: `low > 0` must hold for `log=True`, but got (low=0.0, high=1.0)."),
    ("glob(*)", "key: glob(*) is not a sweep these sweepers read; allowed: choice(...), range("),
]


@both
@pytest.mark.parametrize("grammar, message", ERRORS)
def test_each_refusal_is_one_config_error_in_both_sweepers(sweeper, where, grammar, message):
    with pytest.raises(ConfigError) as raised:
        read(sweeper, where, grammar)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize("sweeper", SWEEPERS)
@pytest.mark.parametrize(
    "config, arguments, dists, fixed",
    [
        ({"k": "choice(1,2)"}, [], {"k": CategoricalDistribution([1, 2])}, {}),
        ({}, ["k=5"], {}, {"k": "k=5"}),
        ({"a": {"b": "choice(1,2)"}}, ["c=5"], {"a.b": CategoricalDistribution([1, 2])}, {"c": "c=5"}),
        ({"k": "choice(1,2)"}, ["k=3"], {}, {"k": "k=3"}),  # the command line fixes a key the config sweeps
        ({"k": "3"}, ["k=range(1,3)"], {"k": IntDistribution(1, 2)}, {}),  # ... or sweeps one it fixes
        ({}, ["~z"], {}, {"~z": "~z"}),
        ({}, ["~z=10", "+w=choice(a,b)"], {"+w": CategoricalDistribution(["a", "b"])}, {"~z": "~z=10"}),
    ],
)
def test_fixed_values_deletions_and_the_later_line_win_alike(sweeper, config, arguments, dists, fixed):
    space = SWEEPERS[sweeper](config, arguments)
    assert space.dists == dists and space.fixed == fixed


def test_the_sweepers_choose_samplers_from_one_table():
    """``study.sampler=<name>`` names the samplers ``hydra/sweeper/sampler=<name>`` offers (and nsga2, the
    old name), and both complete the grid sampler from the space alike."""
    assert {str(n) for n in SamplerName} - {"nsga2"} == set(SAMPLERS)
    dists = read("optuna5", "config", "range(1, 4)").dists | {"e": CategoricalDistribution(["a", "b"])}
    ours = make_sampler(StudyConfig(name="s", sampler="grid", seed=3), dists)
    theirs = sweep_sampler(GridSamplerConfig(seed=3), dists, "hydra.sweeper.sampler")
    grid = {"e": ["a", "b"], "key": [1, 2, 3]}
    assert isinstance(ours, GridSampler) and ours._search_space == theirs._search_space == grid


@pytest.mark.parametrize("key", ["study.sampler", "hydra.sweeper.sampler"])
def test_the_grid_sampler_refuses_a_continuous_space_in_one_line(key):
    dists = read("infersearch", "config", "interval(0, 1)").dists
    with pytest.raises(ConfigError, match=f"^{key}: the grid sampler needs a finite space"):
        if key == "study.sampler":
            make_sampler(StudyConfig(name="s", sampler="grid"), dists)
        else:
            sweep_sampler(GridSamplerConfig(), dists, key)


@pytest.mark.parametrize(
    "rate, outcomes, stops_after",
    [
        (0.0, "ok ok FAIL ok", 3),  # at the first failure (hydra-optuna-sweeper's default)
        (0.5, "FAIL FAIL FAIL", 3),  # 3 of at least 5 judged: the first five can no longer pass
        (0.5, "FAIL FAIL ok ok ok FAIL", None),  # 3 of 6 is not more than half
        (0.5, "ok ok ok ok FAIL FAIL FAIL FAIL FAIL", 9),  # 5 of 9: the share of all this run launched
        (1.0, "FAIL FAIL FAIL FAIL FAIL FAIL", None),  # never
    ],
)
def test_max_failure_rate_has_one_meaning(rate, outcomes, stops_after):
    assert MIN_JUDGED == 5
    rule = FailureRate("study.max_failure_rate", rate)
    stopped = None
    for i, outcome in enumerate(outcomes.split(), 1):
        rule.add(outcome == "FAIL")
        if rule.exceeded() and stopped is None:
            stopped = i
    assert stopped == stops_after


def test_a_failure_rate_out_of_range_is_refused_by_both_sweepers():
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.max_failure_rate: 1.5 is out of range; allowed: 0 to 1$"):
        Optuna5SweeperImpl(sampler=None, max_failure_rate=1.5)
    with pytest.raises(ConfigError, match=r"^study.max_failure_rate: -0.1 is out of range; allowed: 0 to 1$"):
        FailureRate("study.max_failure_rate", -0.1)


def test_a_bad_form_ends_either_sweeper_with_its_one_line(tmp_path):
    """The command line of each sweeper, before any job: optuna5 in a Hydra app that knows nothing of
    infersearch (Hydra prints the error), infersearch before its model is loaded (exit 2)."""
    line = "x: tag(log, ...) takes interval(low, high), not tag(log, range(1,4))"
    proc = run_app(tmp_path / "optuna5", "sphere.py", "x=tag(log, range(1,4))", check=False)
    assert proc.returncode != 0 and line in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    proc, _ = crashy_sweep(tmp_path, tmp_path / "cache", "bad", "+x=tag(log, range(1,4))")
    assert proc.returncode == 2 and "+" + line in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    assert not (tmp_path / "cache").exists()  # refused before the model was built
