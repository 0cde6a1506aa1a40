"""pareto.png tells the points apart: colour is the engine, marker the bit-width and precision, and the
axes are the study's own objectives (first on y, last on x)."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution

from infersearch.config import Direction, ObjectiveConfig, StudyConfig
from infersearch.report.files import pareto_figure, plot_png

POINTS = [  # engine, bits, precision, f1, p50 ms, feasible
    ("eager", 32, "fp32", 0.90, 2.0, True),
    ("onnxruntime", 32, "fp32", 0.90, 1.0, True),
    ("onnxruntime", 8, "fp32", 0.88, 0.5, True),
    ("openvino", 32, "bf16", 0.80, 0.4, False),
]


def made_trials() -> list[optuna.trial.FrozenTrial]:
    trials = []
    for number, (engine, bits, precision, f1, ms, ok) in enumerate(POINTS):
        t = optuna.trial.create_trial(
            values=[f1, ms],
            params={"x": 0.0},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"params": {"engine": engine, "quant_bits": bits, "precision": precision}},
            constraints={"max_accuracy_drop": -1.0 if ok else 1.0},
        )
        t.number = number
        trials.append(t)
    return trials


def test_points_differ_by_engine_and_by_bits_and_precision():
    st = StudyConfig(
        name="plot",
        objectives=[ObjectiveConfig("f1", Direction.maximize), ObjectiveConfig("latency_ms_p50", Direction.minimize)],
    )
    trials = made_trials()
    fig = pareto_figure(trials, trials[1:3], trials[2], st)
    ax = fig.axes[0]
    points = {c.get_gid(): c for c in ax.collections if c.get_gid()}
    colour = {n: tuple(points[f"trial {n}"].get_facecolor()[0][:3]) for n in range(len(POINTS))}
    shape = {n: points[f"trial {n}"].get_paths()[0].vertices.tobytes() for n in range(len(POINTS))}
    assert len({colour[0], colour[1], colour[3]}) == 3  # eager, onnxruntime, openvino
    assert colour[1] == colour[2]  # the same engine
    assert len({shape[1], shape[2], shape[3]}) == 3  # 32-bit fp32, 8-bit fp32, 32-bit bf16
    assert shape[0] == shape[1]
    assert points["trial 3"].get_alpha() < points["trial 0"].get_alpha()  # infeasible faded
    assert "f1" in ax.get_ylabel() and "latency_ms_p50" in ax.get_xlabel()
    legends = [a for a in ax.get_children() if isinstance(a, type(ax.get_legend()))]
    labels = {t.get_text() for lg in legends for t in lg.get_texts()}
    assert {"eager", "onnxruntime", "openvino", "32-bit, fp32", "8-bit, fp32", "recommended"} <= labels
    assert plot_png(trials, trials[1:3], trials[2], st)[:8] == b"\x89PNG\r\n\x1a\n"


def test_int8_schemes_get_their_own_markers_and_the_front_table_names_them():
    from infersearch.report.files import _kind_label, _style_keys, quant_text

    def trial(bits: int, scheme: str) -> optuna.trial.FrozenTrial:
        params = {"engine": "onnxruntime", "quant_bits": bits, "quant_scheme": scheme, "precision": "fp32"}
        return optuna.trial.create_trial(values=[0.9, 1.0], user_attrs={"params": params})

    kinds = {_style_keys(trial(b, s))[1] for b, s in [(8, "dynamic"), (8, "static"), (32, "dynamic"), (32, "auto")]}
    assert sorted(_kind_label(k, False) for k in kinds) == ["32-bit, fp32", "8-bit dynamic, fp32", "8-bit static, fp32"]
    assert quant_text({"quant_bits": 8, "quant_scheme": "auto"}) == "8"


def test_a_re_timed_trial_sits_at_its_confirmed_latency_with_an_arrow_from_its_first():
    st = StudyConfig(
        name="plot",
        objectives=[ObjectiveConfig("f1", Direction.maximize), ObjectiveConfig("latency_ms_p50", Direction.minimize)],
    )
    trials = made_trials()
    confirmation = {"2": {"latency_ms_p50": 1.5}}  # trial 2, first 0.5 ms, re-timed 3x slower
    ax = pareto_figure(trials, trials[1:2], trials[1], st, confirmation).axes[0]
    points = {c.get_gid(): c for c in ax.collections if c.get_gid()}
    assert tuple(points["trial 2"].get_offsets()[0]) == (1.5, 0.88)
    assert tuple(points["trial 1"].get_offsets()[0]) == (1.0, 0.90)  # not re-timed: where it was measured
    (arrow,) = [a for a in ax.texts if hasattr(a, "arrow_patch")]
    assert arrow.xy == (1.5, 0.88) and arrow.xyann == (0.5, 0.88)
    labels = {t.get_text() for lg in ax.figure.legends + [ax.get_legend()] if lg for t in lg.get_texts()}
    assert "re-timed or re-anchored: first → reported" in labels
