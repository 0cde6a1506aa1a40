"""Typed configuration: registered in Hydra's ConfigStore so that Hydra itself
rejects unknown keys, wrong types and values outside an enum; ranges and
combinations are checked in :func:`validate` with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from infersearch.core.errors import ConfigError


class Precision(StrEnum):
    fp32 = "fp32"  # true fp32: TF32 is switched off explicitly on CUDA
    bf16 = "bf16"
    fp16 = "fp16"
    tf32 = "tf32"  # fp32 tensors, TF32 tensor-core matmuls and convolutions (CUDA, Ampere and newer)


class QuantScheme(StrEnum):
    auto = "auto"  # the engine's own default: CPU static int8; CUDA int8 dynamic activations, int4 weight-only
    static = "static"  # int8 weights and activations, activation ranges calibrated ahead (CPU engines)
    # int8 weights, activation ranges found per batch at run time: torch and ONNX Runtime on Linear/MatMul
    # (the usual CPU path for transformer encoders); CUDA int8 dynamic activations x int8 weights
    dynamic = "dynamic"
    # int8 (or CUDA int4) weights, activations in the float precision: OpenVINO via NNCF compress_weights; CUDA
    weight_only = "weight_only"
    float8 = "float8"  # CUDA float8 (e4m3) dynamic activations x weights, where the GPU has fp8 (sm_89+)


class DeviceChoice(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class EngineName(StrEnum):
    eager = "eager"
    compile = "compile"
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    onnxruntime_genai = "onnxruntime_genai"  # language models: onnxruntime-genai's model builder (decode_genai.py)


@dataclass
class GenConfig:
    """Language models: the shape of a generation request the latency is measured at."""

    prompt_tokens: int = 64  # TTFT: the prefill of this many tokens per sequence (batch_size sequences)
    # TPOT: a decode step (one token for each sequence, with the KV cache) at the mean context of generating
    # this many tokens after the prompt, prompt_tokens + new_tokens / 2
    new_tokens: int = 64

    @property
    def context(self) -> int:
        return self.prompt_tokens + self.new_tokens // 2


class TrackingMode(StrEnum):
    offline = "offline"  # written under dir, synced later with `wandb sync`
    online = "online"  # falls back to offline, with one warning, when there is no key or no network
    disabled = "disabled"


class Importance(StrEnum):
    l2 = "l2"
    l1 = "l1"
    taylor = "taylor"
    random = "random"


class Direction(StrEnum):
    maximize = "maximize"
    minimize = "minimize"


class SamplerName(StrEnum):
    """The samplers ``optuna5`` offers as ``hydra/sweeper/sampler=<name>``, by the same names and built the same
    way (hydra_plugins/infersearch_sweeper/samplers.py)."""

    tpe = "tpe"
    random = "random"
    cmaes = "cmaes"
    nsgaii = "nsgaii"
    nsga2 = "nsga2"  # the name of earlier releases: NSGA-II as nsgaii
    nsgaiii = "nsgaiii"
    gp = "gp"
    qmc = "qmc"
    grid = "grid"


class Rule(StrEnum):
    fastest = "fastest"  # lowest value of the last objective among feasible front members
    knee = "knee"  # the front member closest to the ideal point, objectives scaled to [0, 1]
    most_accurate = "most_accurate"  # best value of the first objective among feasible front members


QUANT_BITS = (32, 8, 4)
MAX_PRUNE_RATIO = 0.9


@dataclass
class PruneConfig:
    ratio: float = 0.0  # share of channels removed per prunable layer, in [0, 0.9]
    importance: Importance = Importance.l2
    round_to: int = 8  # pruned widths stay multiples of this (kernel-friendly)
    heads: bool = True  # transformers: also remove whole attention heads (a language model: whole KV groups)
    depth: float = 0.0  # language models: share of decoder layers dropped (the least influential: ShortGPT's)


@dataclass
class RecoverConfig:
    epochs: int | None = None  # fine-tuning epochs after pruning (none when nothing was pruned); None: the model's
    steps: int | None = None  # at most this many optimizer steps in all; None: the model's (a language model's: 60)
    lr: float = 1e-3
    distill: float = 0.5  # weight of distillation from the unpruned model; 0 turns it off
    temperature: float = 4.0


KV_CACHE_PRECISIONS = ("auto", "f32", "f16", "u8")


@dataclass
class QuantConfig:
    bits: int = 32  # 32: float weights; 8: int8 kernels; 4: int4 (real where the device has it)
    scheme: QuantScheme = QuantScheme.auto
    calibration_samples: int = 512
    group_size: int = 128  # weight-only int4/int8 of a language model: weights per scale (torchao)
    # ONNX Runtime's MatMulNBits (a language model on onnxruntime / onnxruntime-genai): the activations'
    # precision inside the int4/int8 kernel, 4 = int8 (fastest on CPU), 1 = fp32 (closest to the float model)
    accuracy_level: int = 4
    symmetric: bool = True  # int4 weights without zero points (False: with them; ONNX Runtime and OpenVINO)
    # OpenVINO (NNCF) for a language model: the share of weight layers in int4 at quant.bits=4, the most
    # sensitive of the rest int8 (NNCF's data-free ranking); and the KV cache's precision in its fused attention
    # (KV_CACHE_PRECISION: f32, f16, u8; auto: the CPU plugin's own choice, u8 with OpenVINO 2026.4 here)
    int4_ratio: float = 1.0
    kv_cache: str = "auto"


@dataclass
class CompileConfig:
    mode: str = "default"  # torch.compile mode: default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs


@dataclass
class MeasureConfig:
    warmup: int = 10
    min_repeats: int = 50  # per candidate, summed over rounds
    min_time_s: float = 0.5  # per candidate, summed over rounds
    rounds: int = 5  # interleaved rounds of variant and baseline
    threads: int = 0  # 0: all cores the process may use
    baseline: bool = True  # time the fp32 baseline in the same rounds
    # report latency as (ratio to that baseline) x (the anchor: the baseline's latency on this machine, cached
    # while it holds): robust to a shared machine's drift; raw figures kept as *_measured (measure/anchor.py)
    anchor: bool = True
    # with the anchor: a round whose baseline is slower than max_state x the anchor ran in a disturbed
    # machine state and is re-run, for at most max_wait_s; after that the trial is marked machine_disturbed.
    # Undisturbed trials sit at 0.95-1.15 on the machines measured; at 1.27-1.34 the ratio was off by 7-13%
    # (benchmarks/results/drift_amd_epyc.json, quiet study 5), so the gate sits just above the quiet band.
    # A baseline faster than the anchor / max_state on an idle machine means the anchor is stale: re-taken.
    max_state: float = 1.2
    max_wait_s: float = 30.0
    # A round is disturbed when other programs took more than the cores our threads leave idle plus this
    # many cores (infersearch.measure.contention: /proc/stat minus our own CPU time; steal included)
    max_foreign_cores: float = 0.3
    # an anchor is settled (cached, trusted) when its round medians agree: robust spread (log) at most this
    anchor_spread: float = 0.1


class DropKind(StrEnum):
    absolute = "absolute"  # in the metric's own units (0.01 = one accuracy point)
    relative = "relative"  # a share of the baseline's value (0.01 = 1% of it)


# In study.objectives: the model's own metric (Task.metric), under its name
# and in its direction once the model is loaded (with_metric); "accuracy" for the zoo's classifiers.
QUALITY = "quality"
# ... and its speed, in the units its kind is served in: per-sample latency, or time per output token (TPOT)
# for a language model (with_metric resolves it)
SPEED = "latency"
SPEED_METRIC = {False: "latency_ms_per_sample", True: "tpot_ms"}


@dataclass
class ObjectiveConfig:
    metric: str = MISSING  # a key of the trial's metrics, or quality, or latency (the model kind's speed metric)
    direction: Direction | None = None  # required except for quality, which takes the metric's own


def _default_objectives() -> list[ObjectiveConfig]:
    return [ObjectiveConfig(QUALITY), ObjectiveConfig(SPEED, Direction.minimize)]


@dataclass
class StudyConfig:
    name: str = MISSING
    storage: str | None = None  # any Optuna storage URL; None: sqlite file in output_dir
    output_dir: str = "outputs/${study.name}"
    n_trials: int = 30  # total measured trials in the study (resuming tops up to this)
    n_jobs: int = 1  # trials asked and launched per batch
    sampler: SamplerName = SamplerName.tpe
    warm_start: bool = True  # a fresh study first tries the fast corner once per engine (study/warm_start.py)
    seed: int = 0
    objectives: list[ObjectiveConfig] = field(default_factory=_default_objectives)
    # largest allowed drop of the model's metric below the baseline's on validation (a rise, for a minimised
    # metric), as study.drop says; null: no constraint
    max_drop: float | None = 0.01
    drop: DropKind = DropKind.absolute
    latency_slo_ms: float | None = None  # bound on p95 latency of one batch
    recommend: Rule = Rule.fastest
    export: bool = True  # save the recommended variant in its engine's format under output_dir/model
    # stop when more than this share of the trials this run launched failed, judged over at least 5
    # (search/study/sweep.py: one meaning in both sweepers); 1.0: failures never stop the study
    max_failure_rate: float = 1.0
    confirm: bool = True  # re-measure the front side by side, with more repeats, before recommending
    # stop a trial whose metric on the first validation batches clearly misses max_drop; only for a
    # metric that declares itself a proportion (Metric.proportion: accuracy), whose subset error is binomial
    early_rejection: bool = True
    early_subset: float = 0.3  # share of the validation split checked first (its first batches)
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats (SQL storages)
    grace_period: int = 30  # a running trial silent this long is failed and retried once
    timeout: float | None = None  # seconds: no new trial starts after this (a time budget beside n_trials)
    # Exit 5 when this run's recommendation is worse than the previous run's by more than this many times
    # the measured noise: the combined per-round spread of the two figures (infersearch.study.regression).
    regression_margin: float = 3.0
    # each scheduled run writes infersearch_<name>.prom here, for node_exporter's textfile collector
    # (last exit status, the recommendation's latency and metric, when); null: no file
    textfile_dir: str | None = "${study.output_dir}"
    # set by the infersearch sweeper on each job it launches: the stored trial the job measures and tells
    # (infersearch.study.job); null for a job of any other sweeper, which stores a trial of its own
    trial: int | None = None


@dataclass
class TrackingConfig:
    mode: TrackingMode = TrackingMode.offline
    project: str = "infersearch"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)
    dir: str = "${study.output_dir}"  # W&B writes <dir>/wandb/offline-run-*


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback: expose it deliberately (0.0.0.0) behind your own network policy
    port: int = 8000
    model_dir: str | None = None  # an exported model; None: this study's recommendation, <output_dir>/model
    max_batch_size: int = 32  # samples run together at most
    max_delay_ms: float = 2.0  # how long the first request of a batch waits for others
    # batches in flight at once, each in its own thread; 0: one at a time on the event loop's own thread (no
    # hand-off between threads: the fastest for a small model, measured; the loop waits while a batch runs)
    workers: int = 1
    threads: int = 0  # intra-op threads per batch; 0: the cores divided among the workers
    queue_size: int = 256  # requests waiting at most; beyond: 503 with Retry-After
    timeout_ms: float = 1000.0  # a request not answered by then gets 504
    max_body_mb: float = 16.0  # larger bodies get 413
    warmup: int = 10  # full batches run before /readyz says ready
    access_log: bool = False  # uvicorn's line per request; /metrics counts them without the cost
    # the service's latency SLO (ms, one request end to end): the alerts' bound and a metrics bucket;
    # null: study.latency_slo_ms if set, else derived (infersearch.serve.settings)
    slo_ms: float | None = None


@dataclass
class TuneConfig:
    """``infersearch serve-tune``: serving settings measured under load on loopback (infersearch.serve.tune)."""

    rate: float | None = None  # target requests/s; null: half the saturation of the first setting
    max_batch_size: list[int] = field(default_factory=lambda: [8, 32])
    max_delay_ms: list[float] = field(default_factory=lambda: [1.0, 4.0])
    workers: list[int] = field(default_factory=lambda: [0, 1, 2])  # 0 was the fastest for the zoo CNN (perf_analyzer)
    threads: list[int] = field(default_factory=lambda: [0])
    duration_s: float = 3.0  # seconds of load at each rate
    goodput_steps: int = 5  # loads of the goodput search per setting (bisection: resolution saturation / 2^steps)
    loads: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])  # offered rates, as shares of the target
    port: int = 8765  # where each candidate is served while measured (loopback)
    n_trials: int = 12  # settings measured at most: a larger grid is searched by Optuna's TPE sampler
    top: int = 5  # rows of the top-N table, and settings drawn in the p99-against-load figure
    dir: str | None = None  # the tune's study (tune.db), table and figure; null: serve-tune/ beside the export
    resume: bool = True  # continue the study of the same artifact, SLO and tune.* settings; false: start over


@dataclass
class AlertsConfig:
    """``infersearch alerts``: a Prometheus rules file derived from the study (infersearch.serve.alerts)."""

    out: str = "${study.output_dir}/alerts.yml"
    selector: dict[str, str] = field(default_factory=dict)  # labels of the service's series: {job: infersearch}
    window: str = "5m"  # rate window of the latency and error rules
    pending: str = "2m"  # how long a condition holds before it fires (the rule's `for`)
    objective: float = 0.99  # share of requests within the SLO that the burn-rate alert protects
    burn_rate: float = 14.4  # 2% of a 30-day error budget in one hour (the SRE workbook's fast burn)
    burn_windows: list[str] = field(default_factory=lambda: ["1h", "5m"])  # long and short: both must burn
    max_error_ratio: float = 0.01  # share of 5xx answers above which the error alert fires
    stale_after_h: float | None = 26.0  # no scheduled run finished this long: alert; null: no such rule


@dataclass
class Config:
    model: Any = MISSING
    prune: PruneConfig = field(default_factory=PruneConfig)
    recover: RecoverConfig = field(default_factory=RecoverConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    precision: Precision = Precision.fp32
    engine: EngineName = EngineName.eager
    compile: CompileConfig = field(default_factory=CompileConfig)
    gen: GenConfig = field(default_factory=GenConfig)
    batch_size: int = 1  # samples per batch; a language model: concurrent sequences
    device: DeviceChoice = DeviceChoice.auto
    seed: int = 0
    cache_dir: str = "outputs/cache"
    isolate: bool = True  # run each trial in a forked child: a crash fails the trial, not the study
    study: StudyConfig = field(default_factory=StudyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    space: dict[str, Any] = field(default_factory=dict)  # Hydra sweep grammar per key
    serve: ServeConfig = field(default_factory=ServeConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)


def validate(cfg: Config) -> None:
    """Range checks Hydra's types cannot express."""
    if not 0.0 <= cfg.prune.ratio <= MAX_PRUNE_RATIO:
        raise ConfigError("prune.ratio", f"{cfg.prune.ratio} is out of range; allowed: 0 to {MAX_PRUNE_RATIO}")
    if cfg.prune.round_to < 1:
        raise ConfigError("prune.round_to", f"{cfg.prune.round_to} must be >= 1")
    if cfg.quant.bits not in QUANT_BITS:
        allowed = ", ".join(map(str, QUANT_BITS))
        raise ConfigError("quant.bits", f"{cfg.quant.bits} is not supported; allowed: {allowed}")
    if not 0.0 <= cfg.prune.depth < 1.0:
        raise ConfigError("prune.depth", f"{cfg.prune.depth} is out of range; allowed: 0 to below 1")
    if cfg.quant.group_size not in (32, 64, 128, 256):
        raise ConfigError("quant.group_size", f"{cfg.quant.group_size} is not supported; allowed: 32, 64, 128, 256")
    if cfg.quant.accuracy_level not in (1, 4):
        raise ConfigError("quant.accuracy_level", f"{cfg.quant.accuracy_level} is not supported; allowed: 1 (fp32 "
                                                  "activations in the int4/int8 kernel), 4 (int8)")  # fmt: skip
    if not 0.0 < cfg.quant.int4_ratio <= 1.0:
        raise ConfigError("quant.int4_ratio", f"{cfg.quant.int4_ratio} is out of range; allowed: above 0 up to 1")
    if cfg.quant.kv_cache not in KV_CACHE_PRECISIONS:
        raise ConfigError("quant.kv_cache", f"{cfg.quant.kv_cache} is not supported; allowed: "
                                            f"{', '.join(KV_CACHE_PRECISIONS)}")  # fmt: skip
    g = cfg.gen
    if g.prompt_tokens < 1 or g.new_tokens < 1:
        raise ConfigError("gen", f"prompt_tokens and new_tokens must be >= 1, got {g.prompt_tokens}, {g.new_tokens}")
    if cfg.quant.calibration_samples < 1:
        raise ConfigError("quant.calibration_samples", "must be >= 1")
    if cfg.batch_size < 1:
        raise ConfigError("batch_size", f"{cfg.batch_size} must be a positive integer")
    if (cfg.recover.epochs is not None and cfg.recover.epochs < 0) or cfg.recover.lr <= 0:
        raise ConfigError("recover", "epochs must be >= 0 and lr > 0")
    if cfg.recover.steps is not None and cfg.recover.steps < 1:
        raise ConfigError("recover.steps", f"{cfg.recover.steps} must be >= 1 or null (the model's default)")
    if not 0.0 <= cfg.recover.distill <= 1.0:
        raise ConfigError("recover.distill", f"{cfg.recover.distill} is out of range; allowed: 0 to 1")
    st = cfg.study
    if st.n_trials < 0 or st.n_jobs < 1:
        raise ConfigError("study", f"n_trials must be >= 0 and n_jobs >= 1, got {st.n_trials}, {st.n_jobs}")
    if not st.objectives:
        raise ConfigError("study.objectives", "needs at least one objective (metric, direction)")
    missing = [o.metric for o in st.objectives if o.direction is None and o.metric not in (QUALITY, SPEED)]
    if missing:
        raise ConfigError("study.objectives", f"{missing[0]} needs a direction (maximize or minimize)")
    if st.max_drop is not None and st.max_drop < 0:
        raise ConfigError("study.max_drop", f"{st.max_drop} must be >= 0 or null")
    if not 0.0 < st.early_subset <= 1.0:
        raise ConfigError("study.early_subset", f"{st.early_subset} is out of range; allowed: above 0 to 1")
    if st.regression_margin < 0:
        raise ConfigError("study.regression_margin", f"{st.regression_margin} must be >= 0 (times the measured spread)")
    if st.latency_slo_ms is not None and st.latency_slo_ms <= 0:
        raise ConfigError("study.latency_slo_ms", "must be > 0 ms or null")
    m = cfg.measure
    if m.warmup < 0 or m.min_repeats < 1 or m.rounds < 1 or m.min_time_s < 0 or m.threads < 0:
        raise ConfigError("measure", "warmup >= 0, min_repeats >= 1, rounds >= 1, min_time_s >= 0, threads >= 0")
    if m.max_state < 1 or m.max_wait_s < 0:
        raise ConfigError("measure", f"max_state must be >= 1 and max_wait_s >= 0, got {m.max_state}, {m.max_wait_s}")
    if m.max_foreign_cores < 0 or m.anchor_spread < 0:
        raise ConfigError("measure", "max_foreign_cores and anchor_spread must be >= 0")
    sv = cfg.serve
    if sv.max_batch_size < 1 or sv.workers < 0 or sv.queue_size < 1 or sv.threads < 0:
        raise ConfigError("serve", "max_batch_size and queue_size must be >= 1, workers and threads >= 0")
    if sv.max_delay_ms < 0 or sv.timeout_ms <= 0 or sv.max_body_mb <= 0 or not 0 < sv.port < 65536:
        raise ConfigError("serve", "max_delay_ms >= 0, timeout_ms > 0, max_body_mb > 0, port in 1..65535")
    if sv.slo_ms is not None and sv.slo_ms <= 0:
        raise ConfigError("serve.slo_ms", "must be > 0 ms or null")
    _validate_tune(cfg.tune)
    al = cfg.alerts
    if not 0 < al.objective < 1 or al.burn_rate <= 0 or not 0 < al.max_error_ratio < 1 or len(al.burn_windows) != 2:
        raise ConfigError("alerts", "objective and max_error_ratio in (0, 1), burn_rate > 0, two burn_windows")
    if m.anchor and not m.baseline:
        raise ConfigError("measure.anchor", "needs measure.baseline=true (a ratio to the baseline timed alongside)")


def _validate_tune(tu: TuneConfig) -> None:
    grids = {"max_batch_size": tu.max_batch_size, "max_delay_ms": tu.max_delay_ms, "workers": tu.workers}
    for key, values in {**grids, "threads": tu.threads, "loads": tu.loads}.items():
        if not values or min(values) < (1 if key == "max_batch_size" else 0):
            raise ConfigError(f"tune.{key}", f"{list(values)}: needs at least one value, none negative")
    if (tu.rate is not None and tu.rate <= 0) or tu.duration_s <= 0 or max(tu.loads) <= 0:
        raise ConfigError("tune", "rate > 0 or null, duration_s > 0, loads with a value > 0")
    if tu.goodput_steps < 1:
        raise ConfigError("tune.goodput_steps", f"{tu.goodput_steps} must be >= 1")
    if tu.n_trials < 1 or tu.top < 1:
        raise ConfigError("tune", f"n_trials ({tu.n_trials}) and top ({tu.top}) must be >= 1")


def with_metric(st: StudyConfig, name: str, direction: str, generation: bool = False) -> StudyConfig:
    """The study with ``quality`` in its objectives named after the model's metric, in that metric's
    direction, and ``latency`` as the model kind's speed metric: what every report, record and W&B key uses."""
    speed = ObjectiveConfig(SPEED_METRIC[generation], Direction.minimize)
    objectives = [
        ObjectiveConfig(name, Direction(direction)) if o.metric == QUALITY else speed if o.metric == SPEED else o
        for o in st.objectives
    ]
    return replace(st, objectives=objectives)


def allowed_drop(st: StudyConfig, baseline: float) -> float | None:
    """``study.max_drop`` in the metric's units, for the baseline's value (None: no constraint)."""
    if st.max_drop is None:
        return None
    return st.max_drop * abs(baseline) if st.drop == "relative" else st.max_drop


def register() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


register()
