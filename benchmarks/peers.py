"""Peer tools against infersearch on one zoo model, same data, same machine, one run, all timed
interleaved at batch 1 and 32 with the same thread count, beside infersearch's own study:

- a CNN: Intel Neural Compressor 3.x int8 autotune, NNCF accuracy-controlled int8 on OpenVINO,
  ONNX Runtime static int8;
- a transformer: the standard CPU paths for encoders: ONNX Runtime ``quantize_dynamic`` (as Hugging
  Face optimum applies it: int8 MatMul weights, per-tensor), NNCF accuracy-controlled int8 with its
  transformer model type on OpenVINO, torch's dynamic int8 Linear.

    python benchmarks/peers.py [model=digits_cnn] [study.n_trials=30] [measure.min_time_s=4]
    python benchmarks/peers.py model=digits_transformer
    python benchmarks/peers.py model=pydocs_llama      (a language model: benchmarks/lm_peers.py)

Run from the repository root (the baseline cache is outputs/cache). Overrides are Hydra's and go to
the study too. Needs `pip install neural-compressor-pt` (benchmark only). Prints a table and writes
benchmarks/results/peers_<model>.json.

Tuning time is what each tool needs to go from the trained fp32 model to a ready runner: INC's
export + autotune + compile, NNCF's conversion + accuracy-controlled quantization + compile, ORT's
export + quantize_static + session; for infersearch, the wall time of the whole study subprocess.
The peers quantize the unpruned model; infersearch's pick is rebuilt from the study's front.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from infersearch.compose import to_config
from infersearch.config import Config
from infersearch.core.cache import atomic_write_text
from infersearch.core.device import capabilities
from infersearch.engines.onnx_export import export_onnx
from infersearch.engines.openvino_engine import convert
from infersearch.measure.latency import Timing, measure_interleaved
from infersearch.models.task import Task
from infersearch.models.training import evaluate
from infersearch.passes.architecture import is_transformer
from infersearch.report.table import table
from infersearch.trial.baseline import Baseline, load_task
from infersearch.trial.evaluate import batch_of, build

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 32)
MAX_DROP = 1.0  # accuracy points, absolute, for every contestant
CALIBRATION = 512  # training samples, as infersearch's quant.calibration_samples
MIN_AGREEMENT = 0.95  # share of validation labels that must match PyTorch's before a contestant is timed
COMPUTE_OPS = ("Convolution", "FullyConnected", "MatMul")  # OpenVINO CPU runtime layer types
ORT_INT8_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat"}
VERSIONS = ("torch", "onnxruntime", "openvino", "nncf", "neural-compressor-pt", "torchao")


@dataclass
class Contestant:
    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]  # CPU batch -> CPU outputs (accuracy, agreement)
    prepare: Callable[[torch.Tensor], Any]  # outside the timed region
    run: Callable[[Any], Any]  # what is timed
    tune_s: float
    kernels: str
    reference: torch.nn.Module  # the PyTorch model whose labels it must reproduce
    info: dict[str, Any] = field(default_factory=dict)


def labels(out: torch.Tensor) -> torch.Tensor:
    return out.argmax(1) if out.dim() == 2 and out.shape[1] > 1 else (out.reshape(-1) > 0.5).long()


def compose_cfg(overrides: list[str]) -> tuple[Config, DictConfig]:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        dcfg = compose("config", overrides=["study.name=peers", *overrides])
    return to_config(dcfg), dcfg


def inc_peer(base: Baseline, calib: torch.Tensor) -> Contestant:
    """INC 3.x autotune over its static int8 set (PT2E: torch.export -> X86InductorQuantizer, QDQ).
    The QDQ model it returns is fake-quant; the real-int8 path INC documents for PT2E on CPU is
    torch.compile with Inductor freezing, which lowers the QDQ pattern to oneDNN qconv/qlinear kernels.
    Inductor's pattern counters are read afterwards to check that this lowering really happened."""
    from neural_compressor.torch.export import export
    from neural_compressor.torch.quantization import INT8StaticQuantConfig, TuningConfig, autotune
    from torch._dynamo.utils import counters

    logging.getLogger("neural_compressor").setLevel(logging.ERROR)
    task, t0 = base.task, time.perf_counter()
    dims = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    exported = export(base.fresh(), (calib[:32],), dynamic_shapes=dims)
    tolerance = (MAX_DROP / 100) / base.val_metric  # INC's tolerable_loss is relative to the baseline
    space = INT8StaticQuantConfig(act_sym=[True, False], act_algo=["kl", "minmax"])  # its int8 tuning set
    tuning = TuningConfig(config_set=[space], tolerable_loss=tolerance)
    qdq = autotune(
        exported,
        tuning,
        eval_fn=lambda m: evaluate(m, task, task.splits.val),
        run_fn=lambda m: [m(calib[i : i + 32]) for i in range(0, len(calib), 32)],
        example_inputs=(calib[:32],),
    )
    compiled = torch.compile(qdq, dynamic=False)  # one static graph per batch size, all compiled below
    layers = sum(isinstance(m, torch.nn.Conv2d | torch.nn.Linear) for m in base.model.modules())
    lowered = {}
    with torch._inductor.config.patch(freezing=True), torch.no_grad():  # calls outside reuse these graphs
        for bs in BATCHES:
            counters["inductor"].clear()
            compiled(batch_of(task, bs))
            lowered[bs] = sum(v for k, v in counters["inductor"].items() if k[0] == "q" and k.endswith("_lower_count"))
        evaluate(compiled, task, task.splits.val)  # compiles the evaluation's shapes too
    per_batch = ", ".join(f"{n}/{layers} at b{bs}" for bs, n in lowered.items())
    kernels = f"real int8 (oneDNN via Inductor: {per_batch})" if all(lowered.values()) else f"NONE/partial: {per_batch}"
    return Contestant(
        "INC autotune + compile", compiled, lambda x: x, compiled, time.perf_counter() - t0, kernels, base.model
    )


def nncf_peer(base: Baseline, calib: torch.Tensor, threads: int) -> Contestant:
    """NNCF post-training int8 with accuracy control (absolute max drop) on the OpenVINO model; a
    transformer with NNCF's transformer model type, as its documentation recommends."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    task, t0 = base.task, time.perf_counter()
    ov_model = convert(base.fresh(), calib[:2])
    model_type = nncf.ModelType.TRANSFORMER if is_transformer(base.model) else None
    val = task.splits.val

    def validate(model: Any, items: Any) -> float:
        xs, ys = zip(*items)  # NNCF may pass a subset
        outs = [torch.from_numpy(np.array(model(x[None].numpy())[0])) for x in xs]
        return task.metric.fn(torch.cat(outs), torch.stack(ys))

    with contextlib.redirect_stdout(io.StringIO()):  # progress bars
        ov_model = nncf.quantize_with_accuracy_control(
            ov_model,
            nncf.Dataset([calib[i : i + 1].numpy() for i in range(len(calib))]),
            nncf.Dataset(list(val.data), lambda item: item[0][None].numpy()),
            validate,
            max_drop=MAX_DROP / 100,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(calib),
            model_type=model_type,
        )
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
    compute = [i["runtimePrecision"].astype(str) for i in infos if i["layerType"].astype(str) in COMPUTE_OPS]
    int8 = sum(p in ("i8", "u8") for p in compute)
    return Contestant(
        "NNCF acc-control + OpenVINO",
        lambda x: torch.from_numpy(np.array(request.infer({0: x.numpy()})[0])),
        lambda x: np.ascontiguousarray(x.numpy()),
        lambda x: request.infer({0: x})[0],
        time.perf_counter() - t0,
        f"real int8 ({int8}/{len(compute)} conv/fc ops in i8)" if int8 else "NONE: no int8 conv/fc at runtime",
        base.model,
        {"precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string()},
    )


def int8_session(path: Path, threads: int):
    """An ONNX Runtime session over an int8 model, and how many int8 ops its optimized graph holds."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(path.with_suffix(".optimized.onnx"))  # to count the fused int8 ops
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    nodes = onnx.load(options.optimized_model_filepath).graph.node
    return session, sum(n.op_type in ORT_INT8_OPS for n in nodes)


def ort_peer(base: Baseline, calib: torch.Tensor, threads: int, workdir: Path) -> Contestant:
    """ONNX Runtime quantize_static, QDQ, per-channel, calibrated on training data; unpruned fp32 model."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": calib[i : i + 32].numpy()} for i in range(0, len(calib), 32)])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    t0 = time.perf_counter()
    fp32 = export_onnx(base.fresh(), calib[:1], workdir / "ort.onnx")
    quant_pre_process(str(fp32), str(workdir / "ort.prep.onnx"))
    int8 = workdir / "ort.int8.onnx"
    quantize_static(
        str(workdir / "ort.prep.onnx"), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    session, fused = int8_session(int8, threads)
    layers = sum(isinstance(m, torch.nn.Conv2d | torch.nn.Linear) for m in base.model.modules())
    return Contestant(
        "ORT quantize_static",
        lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]),
        lambda x: {"input": np.ascontiguousarray(x.numpy())},
        lambda feed: session.run(None, feed)[0],
        time.perf_counter() - t0,
        f"real int8 ({fused}/{layers} conv/linear fused to int8 ops)" if fused else "NONE: QDQ left unfused",
        base.model,
    )


def ort_dynamic_peer(base: Baseline, calib: torch.Tensor, threads: int, workdir: Path) -> Contestant:
    """ONNX Runtime quantize_dynamic on the exported fp32 model: int8 MatMul weights, per-tensor, activations
    quantized per batch (optimum's ``AutoQuantizationConfig.avx2(is_static=False)``); no graph fusions."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    t0 = time.perf_counter()
    fp32 = export_onnx(base.fresh(), calib[:1], workdir / "ortdyn.onnx")
    int8 = workdir / "ortdyn.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), per_channel=False, weight_type=QuantType.QInt8)
    session, fused = int8_session(int8, threads)
    layers = sum(isinstance(m, torch.nn.Linear) for m in base.model.modules())
    return Contestant(
        "ORT quantize_dynamic",
        lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]),
        lambda x: {"input": np.ascontiguousarray(x.numpy())},
        lambda feed: session.run(None, feed)[0],
        time.perf_counter() - t0,
        f"real int8 ({fused}/{layers} linear as int8 ops)" if fused else "NONE: no int8 MatMul",
        base.model,
    )


def torch_dynamic_peer(base: Baseline) -> Contestant:
    """torch.ao's dynamic int8 quantization of every nn.Linear, eager (its documented BERT recipe)."""
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        q = torch.ao.quantization.quantize_dynamic(base.fresh().eval(), {torch.nn.Linear}, dtype=torch.qint8)
    n = sum(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in q.modules())
    run = torch.no_grad()(q)
    return Contestant(
        "torch dynamic int8",
        run,
        lambda x: x,
        run,
        time.perf_counter() - t0,
        f"real int8 ({n} dynamic Linear)",
        base.model,
    )


def peers_for(base: Baseline, calib: torch.Tensor, threads: int, workdir: Path) -> list[Contestant]:
    if is_transformer(base.model):
        return [
            ort_dynamic_peer(base, calib, threads, workdir),
            nncf_peer(base, calib, threads),
            torch_dynamic_peer(base),
        ]
    return [inc_peer(base, calib), nncf_peer(base, calib, threads), ort_peer(base, calib, threads, workdir)]


def run_study(model: str, overrides: list[str], out: Path, product: str = "pareto.json") -> tuple[Any, float]:
    """The study as a subprocess (``infersearch -m``); its ``product`` file, read, and its wall time."""
    cmd = [
        sys.executable,
        "-m",
        "infersearch",
        "-m",
        f"study.name=peers-{model}",
        f"study.output_dir={out}",
        *overrides,
    ]
    print("study:", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not (out / product).exists():
        sys.exit(f"study failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads((out / product).read_text()), wall


def pick(members: list[dict], bs: int) -> tuple[dict, str]:
    """The fastest front member at this batch size within MAX_DROP; else the fastest per sample at any."""
    ok = [m for m in members if 100 * m["metrics"].get("accuracy_drop", 1e9) <= MAX_DROP]
    if not ok:
        sys.exit(f"the study found no front member within {MAX_DROP} accuracy point")
    same = [m for m in ok if m["params"]["batch_size"] == bs]
    if same:
        return min(same, key=lambda m: m["metrics"]["latency_ms_p50"]), "front member at this batch size"
    best = min(ok, key=lambda m: m["metrics"]["latency_ms_per_sample"])
    return best, f"no front member at batch {bs}: fastest per sample (chosen at batch {best['params']['batch_size']})"


def ours(member: dict, why: str, overrides: list[str], tune_s: float) -> Contestant:
    cfg, dcfg = compose_cfg([*overrides, *member["overrides"]])
    b = build(cfg, dcfg.model)
    p = member["params"]
    scheme = f" {p.get('quant_scheme', 'auto')}" if p["quant_bits"] < 32 else ""  # a float model has none
    kernels = f"{p['engine']}, {p['quant_bits']}-bit{scheme} {p['precision']}, prune {p['prune_ratio']}"
    info = {"trial": member["number"], "params": p, "overrides": member["overrides"], "chosen": why, "built": b}
    kernels += " (EMULATED)" if b.qplan.emulated else ""
    return Contestant("infersearch", b.runner, b.runner.prepare, b.runner.run, tune_s, kernels, b.reference, info)


def checks(contestants: list[Contestant], task: Task, base_acc: float) -> dict[int, dict[str, float]]:
    """Validation accuracy, its drop in points, and label agreement with the contestant's PyTorch model."""
    out, x = {}, task.splits.val.take(len(task.splits.val))
    for c in contestants:
        val = c.info["built"].quality[0] if "built" in c.info else evaluate(c.predict, task, task.splits.val)
        with torch.no_grad():
            agree = (labels(c.predict(x)) == labels(c.reference(x))).float().mean().item()
        out[id(c)] = {"accuracy": val, "drop": 100 * (base_acc - val), "agreement": agree}
    return out


def time_batch(cs: list[Contestant], checked: dict, task: Task, bs: int, m: Any) -> tuple[list, list]:
    timed = [c for c in cs if checked[id(c)]["agreement"] >= MIN_AGREEMENT]
    x = batch_of(task, bs)
    fns = {c.name: (lambda run, native: lambda: run(native))(c.run, c.prepare(x)) for c in timed}
    stats = measure_interleaved(fns, bs, Timing.of(m))
    rows, results = [], []
    for c in cs:
        st, ck = stats.get(c.name), checked[id(c)]
        speedup = stats["fp32 eager"].p50_ms / st.p50_ms if st else None
        within = ck["drop"] <= MAX_DROP + 1e-9
        shown = (st.p50_ms, f"{speedup:.3g}x") if st else ("not timed: outputs disagree", "-")
        rows.append([c.name, bs, *shown, ck["drop"], "yes" if within else "NO", ck["agreement"], c.tune_s, c.kernels])
        results.append(
            {
                "contestant": c.name,
                "batch_size": bs,
                "latency": st.to_dict() if st else None,
                "speedup_vs_fp32_eager": speedup,
                "val_accuracy": ck["accuracy"],
                "accuracy_drop_points": ck["drop"],
                "within_max_drop": within,
                "label_agreement": ck["agreement"],
                "tuning_s": c.tune_s,
                "kernels": c.kernels,
                **{k: v for k, v in c.info.items() if k != "built"},
            }
        )
    return rows, results


def machine_info(threads: int, load_start: tuple[float, ...]) -> dict[str, Any]:
    versions = {}
    for pkg in VERSIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[pkg] = importlib.metadata.version(pkg)
    load = {"start": load_start, "end": os.getloadavg()}  # 1/5/15-min load: other work on the machine skews timings
    return {"cpu": capabilities("cpu").name, "threads": threads, "loadavg": load, "versions": versions}


def main(overrides: list[str]) -> dict:
    load_start = os.getloadavg()
    cfg, dcfg = compose_cfg([o for o in overrides if not o.startswith("--")])
    if load_task(dcfg.model).generation:  # a language model: torchao's recipes, TPOT and TTFT (lm_peers.py)
        sys.path.insert(0, str(Path(__file__).parent))
        from lm_peers import main as lm_main

        return lm_main(overrides)
    fp32 = build(cfg, dcfg.model)  # the unpruned fp32 eager baseline, default config
    base, task, threads = fp32.base, fp32.task, torch.get_num_threads()
    calib = task.splits.train.take(CALIBRATION)
    eager = Contestant("fp32 eager", fp32.runner, fp32.runner.prepare, fp32.runner.run, 0.0, "fp32", base.model)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        peers = peers_for(base, calib, threads, Path(tmp))
        members, study_s = run_study(task.name, overrides, Path(tmp) / "study")
    ours_by_trial: dict[int, Contestant] = {}
    contestants: dict[int, list[Contestant]] = {}
    for bs in BATCHES:
        member, why = pick(members, bs)
        if member["number"] not in ours_by_trial:
            ours_by_trial[member["number"]] = ours(member, why, overrides, study_s)
        contestants[bs] = [eager, *peers, ours_by_trial[member["number"]]]
    checked = checks([eager, *peers, *ours_by_trial.values()], task, base.val_metric)
    rows, results = [], []
    for bs, cs in contestants.items():
        r, res = time_batch(cs, checked, task, bs, cfg.measure)
        rows, results = rows + r, results + res
    machine = machine_info(threads, load_start)
    print(f"\n{task.name} on {machine['cpu']}, {threads} threads, load average {machine['loadavg']['end'][0]:.2f}; "
          f"fp32 val accuracy {base.val_metric:.4f}")  # fmt: skip
    head = ["contestant", "batch", "p50 ms", "speed-up vs fp32", "acc drop (pts)", f"<= {MAX_DROP} pt"]
    print(table([*head, "label agree", "tuning s", "kernels / config"], rows))
    out = {
        "model": task.name,
        "machine": machine,
        "max_drop_points": MAX_DROP,
        "baseline_val_accuracy": base.val_metric,
        "study_trials": cfg.study.n_trials,
        "measure": vars(cfg.measure),
        "results": results,
    }
    path = ROOT / "benchmarks" / "results" / f"peers_{task.name}.json"
    atomic_write_text(path, json.dumps(out, indent=2, default=str))
    print(f"written: {path.relative_to(ROOT)}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
