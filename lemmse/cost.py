r"""The cost of a planned sweep, before anything runs: FLOPs per job and predicted hours.

**Work counted** (nominal dense FLOPs, a multiply-add = 2):

* an estimator pass of ``Q`` query patches against ``K`` training patches of ``F`` features:
  scores ``2·Q·K·F``, exponentials ``Q·K``. LE-MMSE and smoothed LE-MMSE: ``Q = m·H·W`` for ``m``
  measurements (``m·samples`` perturbed ones when smoothed), ``K = N·H·W``, ``F = C·P²`` (with
  B = A⁺ for inpainting every patch counts as fully observed: an upper bound). MMSE:
  ``Q = m, K = N, F = C·H·W``; E-MMSE: the dense equivalent of all ``H·W`` circular shifts,
  ``K = N·H·W, F = C·H·W`` (its FFT does less: an upper bound). A plain LE-MMSE store also
  computes the diagnostics; they cost ``diagnostics_factor`` times a plain call, a factor measured
  by :func:`measure_rates` (the FLOPs columns count ``1 + MASS_PASSES`` passes for such a call: the
  99 %-mass histogram is filled in the estimate's own pass, so one).
* ``analytic_shard``: one estimator call per split and shard on ``images_per_shard × sigmas_per_shard``
  measurements, ``analytic.shards_per_job`` shards per job (one start-up each); ``variance``: one
  call per pre-inverse (B = I, A⁺) on ``draws × images``.
* ``train_network``: ``steps ×`` the forward + backward FLOPs of the network on one batch
  (counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device, so
  nothing is computed); ``evaluate_network``: the forward FLOPs of ``2 × n_eval × |σ|`` images.
* every other rule: no FLOPs (I/O and bookkeeping), only the start-up of a job.

**Time of a job** = ``job_overhead_s`` (interpreter, imports, reading inputs) plus

* estimator: ``passes × (2QKF / gemm_fp32 + QK / exp_fp32) / estimator_efficiency``;
* training: ``steps × seconds_per_step`` measured for this very network where the rates file
  has it, else ``steps × flops_per_step / (train_efficiency[arch] × gemm_fp32)``;
* evaluation: forward FLOPs at the achieved FLOP rate of the network's training step.

The rates come from a JSON file that ``lemmse bench --rates-out FILE`` writes
(:func:`measure_rates`: the GEMM and exp rates of the machine, the engine's efficiency against
them and its diagnostics factor on a calibration problem, the seconds per training step of each
network, the start-up of a job) or from :data:`PROFILES`: an A100 and an H100 from their
published peak rates with assumed efficiencies — **estimates**, not measurements.

Core-hours: predicted wall time × the cores the rates were measured with (every CPU job);
GPU-hours: predicted wall time of the jobs the cluster profile sends to a GPU (:data:`GPU_RULES`),
one GPU each. :func:`read_benchmarks` reads what a run measured (Snakemake ``benchmark:`` files,
column ``s``) so the prediction can be set beside it (``lemmse plan CONFIG --cost --compare DIR``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from lemmse.errors import LemmseInputError
from lemmse.plan.records import AnalyticRun, NetworkRun
from lemmse.plan.sweep import Plan, rule_jobs
from lemmse.plan.training import arch_training, model_options, training_config, training_steps

log = logging.getLogger(__name__)

#: Format version of the rates file.
RATES_FORMAT = 1

#: Rules the SLURM profile (slurm/config.yaml) gives a GPU; every other rule runs on CPU cores.
GPU_RULES = ("train_network", "evaluate_network", "analytic_shard")

#: What a rates file's seconds are, and the Snakemake benchmark column that measures the same:
#: ``wall`` — elapsed time (column ``s``), what a prediction of hours means; ``cpu`` — CPU seconds
#: of every thread of the process and its children (column ``cpu_time``), nearly independent of
#: what else loads the machine, so a prediction can be checked on a shared machine.
CLOCKS = {"wall": "s", "cpu": "cpu_time"}
#: Snakemake reads a job's ``cpu_time`` every 0.5 s for its first 15 s, then every 30 s, and keeps the
#: last reading: a job longer than this misses up to 30 s of CPU (the default run's ~40-s training
#: jobs record ~15 CPU-s), which is negligible only for jobs of many minutes.
CPU_TIME_DENSE_SECONDS = 15.0

#: What one job imports before it works (the start-up :func:`measure_rates` times).
JOB_IMPORTS = ("torch", "numpy", "pandas", "xarray", "zarr", "snakemake.script", "lemmse.rules", "lemmse.analytic",
               "lemmse.data", "lemmse.estimators", "lemmse.training.loop")


@dataclass(frozen=True)
class Rates:
    """The rates a prediction is made with (one machine: a CPU node or one GPU).

    Rates are per second for the whole device (all ``cores`` of a CPU measurement).
    """

    label: str
    kind: str  # "cpu" or "gpu"
    estimate: bool  # True for published-peak profiles, False for measured files
    cores: int  # CPU threads the rates were measured with (core-hours = hours × cores); 1 for a GPU
    gemm_fp32: float  # FLOP/s
    gemm_fp64: float  # FLOP/s
    exp_fp32: float  # exponentials/s
    exp_fp64: float  # exponentials/s
    estimator_efficiency: float  # achieved fraction of the scores+exps time bound
    diagnostics_factor: float  # cost of a plain LE-MMSE store's diagnostics call / a plain call
    train_efficiency: dict[str, float]  # arch (or "default") -> fraction of gemm_fp32 a training step reaches
    job_overhead_s: float  # start-up of one job
    train_steps: dict[str, dict[str, float]] = field(default_factory=dict)  # network key -> measured step
    notes: str = ""
    clock: str = "wall"  # "wall": seconds are wall time; "cpu": CPU seconds of all threads (see CLOCKS)

    def to_json(self) -> dict[str, Any]:
        return {"format": RATES_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "rates") -> "Rates":
        if data.get("format") != RATES_FORMAT:
            raise LemmseInputError(f"{where}: not a lemmse rates file of format {RATES_FORMAT} "
                                   f"(format {data.get('format')!r}); write one with lemmse bench --rates-out")
        names = {f for f in cls.__dataclass_fields__}
        missing = sorted(names - set(data) - {"train_steps", "notes", "clock"})
        if missing:
            raise LemmseInputError(f"{where}: missing key(s) {', '.join(missing)}")
        rates = cls(**{k: v for k, v in data.items() if k in names})
        for key in ("gemm_fp32", "gemm_fp64", "exp_fp32", "exp_fp64", "estimator_efficiency", "diagnostics_factor"):
            value = getattr(rates, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise LemmseInputError(f"{where}: {key} must be a positive number, got {value!r}")
        if rates.kind not in ("cpu", "gpu"):
            raise LemmseInputError(f"{where}: kind must be cpu or gpu, got {rates.kind!r}")
        if rates.clock not in CLOCKS:
            raise LemmseInputError(f"{where}: clock must be one of {', '.join(CLOCKS)}, got {rates.clock!r}")
        return rates


def load_rates(path: str | os.PathLike) -> Rates:
    """A rates file written by :func:`write_rates` (``lemmse bench --rates-out``)."""
    path = Path(path)
    if not path.is_file():
        raise LemmseInputError(f"--rates {path}: no such file (write one with lemmse bench --rates-out {path})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise LemmseInputError(f"--rates {path}: not valid JSON ({err})") from err
    return Rates.from_json(data, f"--rates {path}")


# ------------------------------------------------------------------------------------------------
# published peaks (estimates)
# ------------------------------------------------------------------------------------------------

#: Assumed efficiencies of the GPU profiles: the engine at 25 % of the fp32 GEMM bound (the
#: target of the fp32-scores engine), a training step at 30 % of fp32 (no TF32: the workflow
#: switches it off), 20 s to start a job on a cluster node. Assumptions, not measurements.
_ASSUMED = {"estimator_efficiency": 0.25, "diagnostics_factor": 3.0, "train_efficiency": {"default": 0.30},
            "job_overhead_s": 20.0}

#: GPU profiles from the vendors' published peak rates (dense, non-tensor-core fp32 and fp64; exp
#: at 16 special-function results per clock per SM at the boost clock).
PROFILES: dict[str, Rates] = {
    "a100": Rates(label="NVIDIA A100 SXM (published peaks: fp32 19.5 TFLOP/s, fp64 9.7 TFLOP/s; ESTIMATE)",
                  kind="gpu", estimate=True, cores=1, gemm_fp32=19.5e12, gemm_fp64=9.7e12,
                  exp_fp32=108 * 16 * 1.41e9, exp_fp64=108 * 16 * 1.41e9 / 8, **_ASSUMED,
                  notes="efficiencies assumed (see lemmse.cost._ASSUMED)"),
    "h100": Rates(label="NVIDIA H100 SXM (published peaks: fp32 67 TFLOP/s, fp64 34 TFLOP/s; ESTIMATE)",
                  kind="gpu", estimate=True, cores=1, gemm_fp32=67e12, gemm_fp64=34e12,
                  exp_fp32=132 * 16 * 1.98e9, exp_fp64=132 * 16 * 1.98e9 / 8, **_ASSUMED,
                  notes="efficiencies assumed (see lemmse.cost._ASSUMED)"),
}

#: CPU rules under a GPU profile when no measured CPU rates are given: a nominal 2-core AVX-512
#: node (fp32 GEMM 300 GFLOP/s, as measured on such a node in issue 13), engine at 10 %. ESTIMATE.
NOMINAL_CPU = Rates(label="nominal 2-core AVX-512 node (fp32 GEMM 300 GFLOP/s; ESTIMATE)", kind="cpu", estimate=True,
                    cores=2, gemm_fp32=300e9, gemm_fp64=120e9, exp_fp32=2e9, exp_fp64=0.5e9,
                    estimator_efficiency=0.10, diagnostics_factor=3.0, train_efficiency={"default": 0.10},
                    job_overhead_s=10.0, notes="nominal, not measured")


# ------------------------------------------------------------------------------------------------
# work of each job
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EstimatorWork:
    """One estimator call: ``passes`` passes of ``queries × keys`` scores of ``features`` features."""

    queries: int
    keys: int
    features: int
    diagnostics: bool = False

    @property
    def passes(self) -> int:
        """Passes over the keys: one, plus the mass-count refinement passes of the diagnostics."""
        if not self.diagnostics:
            return 1
        from lemmse.estimators.lemmse import MASS_PASSES

        return 1 + MASS_PASSES

    @property
    def score_flops(self) -> float:
        """Score FLOPs of one pass (the FLOPs a call does are ``passes`` times that)."""
        return 2.0 * self.queries * self.keys * self.features

    @property
    def exps(self) -> float:
        return float(self.queries) * self.keys

    def seconds(self, rates: Rates) -> float:
        bound = self.score_flops / rates.gemm_fp32 + self.exps / rates.exp_fp32
        return bound / rates.estimator_efficiency * (rates.diagnostics_factor if self.diagnostics else 1.0)


def estimator_work(plan: Plan, run: AnalyticRun, measurements: int) -> EstimatorWork:
    """The work of estimating ``measurements`` measurements of ``run``'s store (see module doc)."""
    info = plan.datasets[run.dataset]
    c, h, w = info["channels"], info["resolution"], info["resolution"]
    kind = plan.kind(run)
    if kind == "mmse":
        return EstimatorWork(measurements, run.train_size, c * h * w)
    if kind == "emmse":
        return EstimatorWork(measurements, run.train_size * h * w, c * h * w)
    samples = int(plan.config["estimators"][run.estimator]["samples"]) if kind == "smoothed" else 1
    # the diagnostics' cost is their mass histogram (Plan.wants_mass), filled in the estimate's own pass
    # (MASS_PASSES = 0) and priced by the measured diagnostics_factor; densities and sources ride on it too
    return EstimatorWork(measurements * samples * h * w, run.train_size * h * w, c * run.patch**2,
                         diagnostics=kind == "lemmse" and plan.wants_mass(run))


def network_key(arch: str, preset: str, model_options: Mapping[str, Any], patch: int, channels: int,
                resolution: int, batch: int) -> str:
    """The identity of a network's training step (what its measured seconds per step belong to)."""
    return (f"{arch}|{preset}|{json.dumps(dict(model_options), sort_keys=True)}|P{patch}|"
            f"{channels}x{resolution}x{resolution}|b{batch}")


def _network_of(plan: Plan, run: NetworkRun) -> tuple[str, dict]:
    t = plan.config["training"]
    info = plan.datasets[run.dataset]
    options = model_options(t, run.dataset, run.arch)
    key = network_key(run.arch, t["preset"], options, run.patch, info["channels"], info["resolution"], t["batch_size"])
    return key, {"arch": run.arch, "preset": t["preset"], "model_options": options, "patch": run.patch,
                 "channels": info["channels"], "resolution": info["resolution"], "batch": t["batch_size"]}


_FLOPS_CACHE: dict[tuple, tuple[float, float]] = {}


def model_flops(arch: str, preset: str, model_options: Mapping[str, Any], patch: int, channels: int,
                resolution: int, batch: int) -> tuple[float, float]:
    """``(forward + backward FLOPs of one training batch, forward FLOPs of one image)``.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device: shapes only,
    nothing is computed, so even the paper's networks count in a fraction of a second.
    """
    cache_key = (arch, preset, json.dumps(dict(model_options), sort_keys=True), patch, channels, resolution, batch)
    if cache_key in _FLOPS_CACHE:
        return _FLOPS_CACHE[cache_key]
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lemmse.models.registry import build_model, resolve_options

    options = resolve_options(arch, patch, preset, model_options)
    with torch.device("meta"):
        model = build_model(arch, channels, patch, options)
        x, sigma = torch.empty(batch, channels, resolution, resolution), torch.empty(batch)
        one, one_sigma = torch.empty(1, channels, resolution, resolution), torch.empty(1)
    with FlopCounterMode(display=False) as counter:
        model(x, sigma).sum().backward()
    step = float(counter.get_total_flops())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(one, one_sigma)
    _FLOPS_CACHE[cache_key] = (step, float(counter.get_total_flops()))
    return _FLOPS_CACHE[cache_key]


_WARNED: set[str] = set()


def _step_seconds(rates: Rates, key: str, arch: str, flops_step: float) -> float:
    measured = rates.train_steps.get(key)
    if measured is not None:
        return float(measured["seconds_per_step"])
    if not rates.estimate and key not in _WARNED:
        _WARNED.add(key)
        log.warning("the rates file did not time the training step of %s; extrapolated from the efficiency of "
                    "the networks it did time (measure this config's own: lemmse bench --rates-out FILE "
                    "--rates-config CONFIG)", key)
    eff = rates.train_efficiency.get(arch, rates.train_efficiency.get("default"))
    if eff is None:
        effs = list(rates.train_efficiency.values())
        if not effs:
            raise LemmseInputError(f"rates {rates.label!r} hold no training efficiency for {arch}")
        eff = min(effs)
    return flops_step / (eff * rates.gemm_fp32)


@dataclass
class RuleCost:
    """Predicted cost of every job of one rule."""

    rule: str
    jobs: int = 0
    score_flops: float = 0.0
    exps: float = 0.0
    model_flops: float = 0.0
    seconds: float = 0.0  # predicted seconds (on the rates' clock), summed over jobs
    device: str = "cpu"  # where the jobs run: cpu or gpu
    cores: int = 1
    clock: str = "wall"  # seconds are wall time, or CPU seconds of all threads (see CLOCKS)

    @property
    def flops(self) -> float:
        return self.score_flops + self.model_flops

    @property
    def core_hours(self) -> float:
        """Cores held × wall hours (CPU seconds already sum the threads)."""
        if self.device != "cpu":
            return 0.0
        return self.seconds * (self.cores if self.clock == "wall" else 1) / 3600

    @property
    def gpu_hours(self) -> float:
        return self.seconds / 3600 if self.device == "gpu" else 0.0


def predict(plan: Plan, figures: Iterable[str], cpu: Rates, gpu: Rates | None = None) -> dict[str, RuleCost]:
    """Predicted cost per rule of ``snakemake all`` on an empty results folder.

    ``gpu``: rates of the device the :data:`GPU_RULES` run on (``None``: they run on ``cpu`` too).
    ``figures``: the covered figures (:func:`lemmse.plan.sweep.figure_coverage`).
    """
    costs: dict[str, RuleCost] = {}
    for rule, n in rule_jobs(plan, list(figures)).items():
        rates = gpu if (gpu is not None and rule in GPU_RULES) else cpu
        start_up = 0.0 if rule == "all" else n * rates.job_overhead_s  # `all` runs nothing
        costs[rule] = RuleCost(rule, jobs=n, seconds=start_up, device=rates.kind, cores=rates.cores, clock=rates.clock)

    def rates_of(rule: str) -> Rates:
        return gpu if (gpu is not None and rule in GPU_RULES) else cpu

    m, a = plan.config["measurements"], plan.config["analytic"]
    n_images = 2 * m["n_eval"] * len(m["sigmas"])
    for run in plan.networks:
        key, net = _network_of(plan, run)
        flops_step, _ = model_flops(**net)
        steps = training_steps(arch_training(plan.config["training"], run.arch), run.train_size)
        c = costs["train_network"]
        c.model_flops += steps * flops_step
        c.seconds += steps * _step_seconds(rates_of("train_network"), key, run.arch, flops_step)
    for ev in plan.evaluations:
        key, net = _network_of(plan, ev.run)
        flops_step, flops_image = model_flops(**net)
        rates = rates_of("evaluate_network")
        achieved = flops_step / _step_seconds(rates, key, ev.run.arch, flops_step)
        c = costs["evaluate_network"]
        c.model_flops += n_images * flops_image
        c.seconds += n_images * flops_image / achieved
    for run in plan.analytics:
        for first_image, first_sigma in plan.shards(run):
            images = min(a["images_per_shard"], m["n_eval"] - first_image)
            sigmas = min(a["sigmas_per_shard"], len(m["sigmas"]) - first_sigma)
            work = estimator_work(plan, run, images * sigmas)
            c = costs["analytic_shard"]
            c.score_flops += 2 * work.score_flops * work.passes
            c.exps += 2 * work.exps
            c.seconds += 2 * work.seconds(rates_of("analytic_shard"))
    v = plan.config["variance"]
    for task in plan.variance_tasks():
        run = AnalyticRun(v["dataset"], v["dataset"], task, "identity", "lemmse", v["patch"], v["train_size"])
        work = estimator_work(plan, run, v["draws"] * v["images"])
        work = EstimatorWork(work.queries, work.keys, work.features, diagnostics=False)
        c = costs["variance"]
        c.score_flops += 2 * work.score_flops  # B = I and B = A⁺
        c.exps += 2 * work.exps
        c.seconds += 2 * work.seconds(rates_of("variance"))
    return costs


def totals(costs: Mapping[str, RuleCost]) -> dict[str, float]:
    """Jobs, FLOPs, core-hours and GPU-hours summed over the rules."""
    return {"jobs": sum(c.jobs for c in costs.values()), "flops": sum(c.flops for c in costs.values()),
            "exps": sum(c.exps for c in costs.values()),
            "core_hours": sum(c.core_hours for c in costs.values()),
            "gpu_hours": sum(c.gpu_hours for c in costs.values())}


# ------------------------------------------------------------------------------------------------
# what a run measured
# ------------------------------------------------------------------------------------------------

def read_benchmarks(folder: str | os.PathLike, clock: str = "wall") -> dict[str, tuple[int, float]]:
    """Rule -> (jobs, summed seconds) of the Snakemake ``benchmark:`` files under ``folder``
    (``results/benchmarks/<rule>/**.tsv``; a file of several repeats counts their mean); the
    column is the one of ``clock`` (:data:`CLOCKS`: ``s`` for wall, ``cpu_time`` for cpu). On the cpu
    clock a warning names each rule with jobs longer than :data:`CPU_TIME_DENSE_SECONDS`."""
    import pandas as pd

    folder = Path(folder)
    if not folder.is_dir():
        raise LemmseInputError(f"--compare {folder}: no such folder (a run writes results/benchmarks/)")
    out: dict[str, tuple[int, float]] = {}
    truncated: dict[str, int] = {}
    for tsv in sorted(folder.rglob("*.tsv")):
        first = tsv.relative_to(folder).parts[0]
        rule = first.removesuffix(".tsv")  # a one-job rule's file sits at the top: <rule>.tsv
        frame = pd.read_csv(tsv, sep="\t")
        column = CLOCKS[clock]
        if column not in frame.columns or frame.empty:
            raise LemmseInputError(f"{tsv}: not a Snakemake benchmark file (no column {column})")
        jobs, seconds = out.get(rule, (0, 0.0))
        out[rule] = (jobs + 1, seconds + float(frame[column].mean()))
        if clock == "cpu" and "s" in frame.columns and (frame["s"] > CPU_TIME_DENSE_SECONDS).any():
            truncated[rule] = truncated.get(rule, 0) + 1
    for rule, jobs in truncated.items():
        log.warning("%s: cpu_time of %d job(s) longer than %g s is Snakemake's last reading, taken up to 30 s "
                    "before the job ended, so it undercounts; compare that rule on the wall clock",
                    rule, jobs, CPU_TIME_DENSE_SECONDS)
    return out


# ------------------------------------------------------------------------------------------------
# measuring the rates (lemmse bench --rates-out)
# ------------------------------------------------------------------------------------------------

def _now(clock: str) -> float:
    """Seconds on ``clock``: elapsed, or CPU time of this process's threads plus finished children."""
    if clock == "wall":
        return time.perf_counter()
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _best_seconds(fn, repeats: int, sync, clock: str = "wall") -> float:
    fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        start = _now(clock)
        fn()
        sync()
        best = min(best, _now(clock) - start)
    return best


def _gemm_rate(dtype, device, size: int, repeats: int, sync, clock: str) -> float:
    import torch

    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    out = torch.empty(size, size, dtype=dtype, device=device)
    return 2.0 * size**3 / _best_seconds(lambda: torch.mm(a, b, out=out), repeats, sync, clock)


def _exp_rate(dtype, device, count: int, repeats: int, sync, clock: str) -> float:
    import torch

    x = torch.randn(count, dtype=dtype, device=device)
    out = torch.empty_like(x)
    return count / _best_seconds(lambda: torch.exp(x, out=out), repeats, sync, clock)


def _job_overhead(repeats: int, clock: str) -> float:
    """Seconds for a fresh interpreter to import what a workflow job imports (best of ``repeats``)."""
    code = "import " + ", ".join(JOB_IMPORTS)
    return _best_seconds(lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True),
                         repeats, lambda: None, clock)


def _calibration_shape(plan: Plan | None) -> dict[str, int]:
    """The estimator call the engine is timed on: one shard call of the config's largest LE-MMSE
    store, or (no config) the benchmark's digits problem at D = 1500, P = 5, 16 measurements."""
    if plan is None:
        return {"train": 1500, "channels": 1, "resolution": 16, "patch": 5, "measurements": 16}
    runs = [r for r in plan.analytics if plan.kind(r) == "lemmse"]
    if not runs:
        raise LemmseInputError("the config plans no LE-MMSE store to calibrate the engine on")
    a, m = plan.config["analytic"], plan.config["measurements"]
    measurements = min(a["images_per_shard"], m["n_eval"]) * min(a["sigmas_per_shard"], len(m["sigmas"]))
    run = max(runs, key=lambda r: estimator_work(plan, r, measurements).score_flops)
    info = plan.datasets[run.dataset]
    return {"train": run.train_size, "channels": info["channels"], "resolution": info["resolution"],
            "patch": run.patch, "measurements": measurements}


def _estimator_calibration(shape: Mapping[str, int], device: str, repeats: int, sync, gemm: float,
                           exp: float, clock: str) -> tuple[float, float]:
    """``(efficiency, diagnostics factor)`` of the engine on random data of ``shape``."""
    import torch

    from lemmse.estimators import estimate

    gen = torch.Generator().manual_seed(0)
    c, r = shape["channels"], shape["resolution"]
    train = torch.rand(shape["train"], c, r, r, generator=gen)
    y = (torch.rand(shape["measurements"], c, r, r, generator=gen) + 0.1 * torch.randn(
        shape["measurements"], c, r, r, generator=gen)).to(torch.float32)
    kwargs = dict(task="denoising", estimator="lemmse", sigma=0.1, patch=shape["patch"], device=device)
    plain = _best_seconds(lambda: estimate(train, y, **kwargs), repeats, sync, clock)
    diag = _best_seconds(lambda: estimate(train, y, diagnostics=True, **kwargs), repeats, sync, clock)
    work = EstimatorWork(shape["measurements"] * r * r, shape["train"] * r * r, c * shape["patch"] ** 2)
    bound = work.score_flops / gemm + work.exps / exp
    return bound / plain, diag / plain


def _networks_to_time(plan: Plan | None) -> list[dict]:
    """Every distinct network of the config; without one, each architecture's small preset."""
    if plan is None:
        return [{"arch": arch, "preset": "small", "model_options": {}, "patch": 5, "channels": 1, "resolution": 16,
                 "batch": 32} for arch in ("unet", "resnet", "patchmlp")]
    seen: dict[str, dict] = {}
    for run in plan.networks:
        key, net = _network_of(plan, run)
        seen.setdefault(key, {**net, "_run": run})
    return list(seen.values())


#: Most training steps :func:`_time_training` times before it settles for an upper bound.
MAX_TIMED_STEPS = 160


def _time_training(plan: Plan | None, net: Mapping[str, Any], device: str, warmup: int, steps: int,
                   clock: str) -> float:
    """Seconds per step of the real training loop (:func:`lemmse.training.loop.train`) on random
    images: a run of ``warmup + steps`` steps minus a run of ``warmup`` steps (set-up cancels)."""
    import numpy as np

    from lemmse.training.config import TrainConfig
    from lemmse.training.loop import train

    if plan is not None:
        run = net["_run"]
        base = training_config(plan.config, run)
    else:
        base = TrainConfig(arch=net["arch"], patch=net["patch"], preset=net["preset"],
                           model_options=dict(net["model_options"]), batch_size=net["batch"])
    c, r = net["channels"], net["resolution"]
    images = np.random.default_rng(0).random((max(net["batch"], 8), c, r, r), dtype=np.float32)

    def seconds(n: int) -> float:
        config = type(base)(**{**asdict(base), "steps": n, "checkpoint_every": n, "ema_start": 0})
        with tempfile.TemporaryDirectory() as tmp:
            start = _now(clock)
            train(Path(tmp) / "run", config, images, device=device)
            return _now(clock) - start

    seconds(1)  # warm caches and lazy imports
    # The difference of two runs is the steps' own time only when it stands out of the set-up's
    # jitter: a tiny network's few steps can cost less than that jitter (a difference <= 0 was seen
    # under load), so the timed steps double until they are at least a fifth of the longer run.
    while True:
        short = min(seconds(warmup), seconds(warmup))
        long = min(seconds(warmup + steps), seconds(warmup + steps))
        if long - short >= 0.2 * long:
            return (long - short) / steps
        if steps >= MAX_TIMED_STEPS:
            log.warning("training steps of %s do not stand out of the set-up time after %d steps: "
                        "using the whole run's time per step (an upper bound)", net["arch"], steps)
            return long / (warmup + steps)
        steps *= 2


def measure_rates(*, plan: Plan | None = None, device: str = "cpu", repeats: int = 3, train_steps: int = 5,
                  warmup_steps: int = 2, clock: str = "wall") -> Rates:
    """Measure the rates of this machine (all torch threads, or one GPU) — see the module doc.

    ``plan``: calibrate on the config's own networks and shard shape (recommended: the engine's
    efficiency and a network's step time depend on their size); without one, on the benchmark's
    digits problem and each architecture's small preset. ``clock``: what a second is
    (:data:`CLOCKS`); ``cpu`` only on a CPU.
    """
    import torch

    if clock not in CLOCKS:
        raise LemmseInputError(f"clock {clock!r}: choose one of {', '.join(CLOCKS)}")
    dev = torch.device(device)
    if clock == "cpu" and dev.type != "cpu":
        raise LemmseInputError("CPU-time rates need --device cpu")
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    size = 2048 if dev.type == "cuda" else 1024
    gemm32 = _gemm_rate(torch.float32, dev, size, repeats, sync, clock)
    gemm64 = _gemm_rate(torch.float64, dev, size, repeats, sync, clock)
    exp32 = _exp_rate(torch.float32, dev, 1 << 22, repeats, sync, clock)
    exp64 = _exp_rate(torch.float64, dev, 1 << 22, repeats, sync, clock)
    log.info("GEMM %.1f GFLOP/s fp32, %.1f fp64; exp %.2f G/s fp32, %.2f fp64",
             gemm32 / 1e9, gemm64 / 1e9, exp32 / 1e9, exp64 / 1e9)
    overhead = _job_overhead(max(1, repeats - 1), clock)
    log.info("job start-up (imports of a fresh interpreter): %.2f s", overhead)
    shape = _calibration_shape(plan)
    efficiency, diag = _estimator_calibration(shape, str(dev), repeats, sync, gemm32, exp32, clock)
    log.info("engine on %s: %.1f %% of the scores+exps bound, diagnostics x%.2f", shape, 100 * efficiency, diag)
    steps: dict[str, dict[str, float]] = {}
    by_arch: dict[str, list[float]] = {}
    for net in _networks_to_time(plan):
        spec = {k: v for k, v in net.items() if not k.startswith("_")}
        key = network_key(**spec)
        flops_step, _ = model_flops(**spec)
        seconds = _time_training(plan, net, str(dev), warmup_steps, train_steps, clock)
        steps[key] = {"seconds_per_step": seconds, "flops_per_step": flops_step}
        by_arch.setdefault(net["arch"], []).append(flops_step / seconds / gemm32)
        log.info("training step of %s: %.4f s (%.2f GFLOP/s)", key, seconds, flops_step / seconds / 1e9)
    train_eff = {arch: max(v) for arch, v in by_arch.items()}
    train_eff["default"] = min(train_eff.values()) if train_eff else 0.1
    threads = torch.get_num_threads() if dev.type == "cpu" else 1
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    return Rates(label=f"measured on {platform.node()} ({name}, {dev.type}, {threads} thread(s)) "
                       f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
                 kind="gpu" if dev.type == "cuda" else "cpu", estimate=False, cores=threads, gemm_fp32=gemm32,
                 gemm_fp64=gemm64, exp_fp32=exp32, exp_fp64=exp64, estimator_efficiency=efficiency,
                 diagnostics_factor=diag, train_efficiency=train_eff, job_overhead_s=overhead, train_steps=steps,
                 notes=f"engine calibrated on {json.dumps(shape)}; torch {torch.__version__}", clock=clock)


def write_rates(path: str | os.PathLike, rates: Rates) -> Path:
    """Write ``rates`` as JSON (atomically)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(rates.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
    log.info("wrote %s", path)
    return path


def bench_hook(path: str | os.PathLike, *, config: str | os.PathLike | None, device: str,
               clock: str = "wall") -> Rates:
    """``lemmse bench --rates-out FILE [--rates-config CONFIG] [--rates-clock cpu]``: measure, write."""
    from lemmse.plan.config import load_config
    from lemmse.plan.sweep import make_plan

    path = Path(path)
    if not path.parent.is_dir():
        raise LemmseInputError(f"--rates-out {path}: directory {path.parent} does not exist")
    plan = make_plan(load_config(config)) if config is not None else None
    rates = measure_rates(plan=plan, device=device, clock=clock)
    write_rates(path, rates)
    return rates
