"""serve-tune's own Optuna study without servers: which settings it asks for (the whole of a small grid, the
TPE sampler's distinct picks from a large one), what a killed tune leaves and how the next run continues, and
the top-N table and figure drawn from measured rows. Real Optuna on SQLite in tmp_path; the goodput told is
a made-up function of the setting, so the test decides what the sampler learns."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from infersearch.config import StudyConfig, TuneConfig
from infersearch.core.errors import ConfigError
from infersearch.serve.settings import TUNED
from infersearch.serve.tune import settings_grid
from infersearch.serve.tune_report import markdown, p99_png, top_rows
from infersearch.serve.tune_study import study_name, tune_search


def _goodput(setting: dict) -> float:
    return 100.0 * setting["max_batch_size"] / (1 + setting["max_delay_ms"]) + setting["workers"]


def _measure_all(search) -> list[dict]:
    measured = []
    while (asked := search.ask()) is not None:
        trial, setting = asked
        measured.append(setting)
        row = {**setting, "goodput_rps": _goodput(setting), "server_p99_ms": 1.0}
        search.tell(trial, _goodput(setting), row, {"setting": setting, "loads": [], "goodput_probes": []}, 50.0)
    return measured


def test_a_small_grid_is_measured_whole_in_order(tmp_path):
    tu = TuneConfig(max_batch_size=[1, 4], max_delay_ms=[0, 2], workers=[1], threads=[0], n_trials=4)
    grid = settings_grid(tu)
    with tune_search(tmp_path, "t", grid, tu, StudyConfig()) as search:
        assert search.exhaustive and _measure_all(search) == grid
        rows, curves = search.results()
    assert [{k: r[k] for k in TUNED} for r in rows] == grid and [c["setting"] for c in curves] == grid
    assert search.target_rps == 50.0


def test_a_large_grid_is_searched_by_tpe_for_n_trials_distinct_settings(tmp_path):
    tu = TuneConfig(max_batch_size=[1, 2, 4, 8, 16, 32], max_delay_ms=[0, 1, 2, 4], workers=[1, 2], n_trials=9)
    grid = settings_grid(tu)
    with tune_search(tmp_path, "t", grid, tu, StudyConfig(seed=3)) as search:
        assert not search.exhaustive
        measured = _measure_all(search)
        trials = search.study.get_trials()
    assert len(grid) == 48 and len(measured) == 9
    assert len({tuple(m.values()) for m in measured}) == 9  # a repeated proposal is told, not served again
    assert all(m in grid for m in measured)
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    assert len(trials) == 9 + len(repeats)
    assert all(t.value == trials[t.user_attrs["repeat_of"]].value for t in repeats)


def test_a_killed_tune_is_continued_and_resume_false_starts_over(tmp_path):
    tu = TuneConfig(max_batch_size=[1, 4, 8], max_delay_ms=[1], workers=[1], threads=[0])
    grid, st = settings_grid(tu), StudyConfig()
    with tune_search(tmp_path, "t", grid, tu, st) as search:
        first, setting = search.ask()
        search.tell(first, 10.0, {**setting, "goodput_rps": 10.0}, {"setting": setting}, 20.0)
        search.ask()  # the process dies while measuring the second setting: the trial stays RUNNING
        with pytest.raises(ConfigError, match="another serve-tune is running"):
            with tune_search(tmp_path, "t", grid, tu, st):
                pass
    with tune_search(tmp_path, "t", grid, tu, st) as search:
        states = [t.state for t in search.study.get_trials()]
        assert states == [TrialState.COMPLETE, TrialState.FAIL]  # the abandoned trial failed, measured again
        assert search.target_rps == 20.0
        assert [s["max_batch_size"] for s in _measure_all(search)] == [4, 8]
        assert len(search.measured()) == 3
    tu.resume = False
    with tune_search(tmp_path, "t", grid, tu, st) as search:
        assert search.study.get_trials() == [] and search.target_rps is None


def test_the_study_name_follows_what_decides_the_measurements(tmp_path):
    tu, same = TuneConfig(), {"artifact": "abc", "slo_ms": 5.0}
    name = study_name(tu, same)
    tu.port, tu.top, tu.dir = 9999, 2, str(tmp_path)  # where it is served and shown: the same study
    assert study_name(tu, same) == name
    tu.duration_s = 1.0
    assert study_name(tu, same) != name and study_name(TuneConfig(), {**same, "slo_ms": 6.0}) != name


def test_top_table_and_figure(tmp_path):
    settings = [dict(zip(TUNED, (b, 1.0, 1, 0))) for b in (1, 4, 16)]
    rows = [{**s, "goodput_rps": g, "server_p99_ms": p} for s, g, p in zip(settings, (40.0, 90.0, 88.0), (3, 2, 1))]
    curves = [
        {
            "setting": s,
            "loads": [{"offered_rps": 20.0, "server_p99_ms": 1.0 + i}],
            "goodput_probes": [
                {"offered_rps": r["goodput_rps"], "server_p99_ms": 4.0},
                {"offered_rps": 120.0, "server_p99_ms": 30.0},
            ],
        }  # fmt: skip
        for i, (s, r) in enumerate(zip(settings, rows))
    ]
    top = top_rows(rows, 2, chosen=2)
    assert [(r["rank"], r["max_batch_size"], r["picked"]) for r in top] == [(1, 4, False), (2, 16, True)]
    assert markdown(top).splitlines()[0].startswith("| rank | max_batch_size |")
    png = p99_png(rows, curves, slo_ms=10.0, n=2, title="test", pick=settings[2])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
