r"""``lemmse bench``: speed and exactness of the LE-MMSE fast paths on the benchmark problem.

The problem (``shared/bench/README.md``): LE-MMSE of the digits test images (index 1500 on) of
``digits16.npy``, trained on the first D ∈ {500, 1500}, P ∈ {3, 5}, for denoising (B = I),
inpainting with a centred 7×7 hole (B = I and B = A⁺) and Gaussian deconvolution (std 1, B = I);
and the colour tiles of ``color16.npy`` (test images 1000 on) with D = 500. A measurement is
``y = A x + σ·test_noise[k mod 8, :C]``.

For every configuration and σ the run reports, all measured in this one run:

* seconds per image of the default (fp32-screened) path, best of ``--repeats`` calls each
  estimating ``--images`` measurements;
* the same for lemmse's own float64 path (every score by the dense float64 product), and the
  ratio of the two;
* on CPU with more than one thread, the same with the query tiles run in turn and PyTorch's
  threads inside each operation, and its ratio to the default, where tiles run concurrently one
  thread each (:mod:`lemmse.estimators.tile_threads`);
* the achieved rate of the useful distance work, ``2·Q·K·C·P²`` flops for ``Q = n·H·W`` query
  patches against ``K = D·H·W`` training patches, in GFLOP/s (counted as if every patch were
  fully observed: with B = A⁺ for inpainting the hidden pixels cost nothing, so that path's
  figure exceeds the work actually done), and that rate as a fraction of the machine's square
  float32 matrix-multiply rate, measured just before the configuration;
* the fraction of (query, key) pairs whose fp32 screen score was computed (the rest were dropped
  by the balls of the pre-screen, :mod:`lemmse.estimators.stream`, or sat on densely scored tiles),
  and the fraction scored in float64 (the rest were screened out in fp32);
* the max abs difference of the float32 output from the same estimator run in float64 (the
  float64 path itself is checked against an independent brute force by the test suite).

No speed-up over the authors' implementation is printed: it is not timed in this run, and a
time measured on another machine is no basis for a ratio.

``--diagnostics`` measures instead what the LE-MMSE diagnostics cost on their problem (issue 12):
digits trained on the first D = 300, P = 5, every path of ``DIAGNOSTIC_PATHS`` (``--quick``:
denoising only), σ from 0.01 (almost every key far below the largest) to 0.8 (almost every key
within the 99 %-mass window). Per configuration and σ, best of ``--repeats`` interleaved calls
on ``--images`` measurements: seconds per image of the estimate alone, and the ratios of the
estimate with the densities and source maps (``mass=False``), and with every diagnostic, to it —
ratios of times measured in this one run, never an absolute target.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("lemmse.bench")

#: ``../shared/bench/data`` beside the repository (the default of ``--data``).
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "data"
DIGITS_TEST_START = 1500
COLOR_TEST_START = 1000
HOLE = 7
BLUR_STD = 1.0

#: (task, pre-inverse) pairs of the problem.
PATHS = (("denoising", "identity"), ("inpainting", "identity"), ("inpainting", "pinv"),
         ("deconvolution", "identity"))
#: The diagnostics problem (``--diagnostics``): training images, patch, paths and noise levels.
DIAGNOSTIC_TRAIN = 300
DIAGNOSTIC_PATCH = 5
DIAGNOSTIC_PATHS = PATHS + (("deconvolution", "pinv"),)
DIAGNOSTIC_SIGMAS = (0.01, 0.05, 0.2, 0.8)


@dataclass(frozen=True)
class Config:
    """One benchmark configuration."""

    dataset: str  # "digits" or "color"
    train_size: int
    patch: int
    task: str
    preinverse: str

    @property
    def label(self) -> str:
        return f"{self.dataset} D={self.train_size} P={self.patch} {self.task} B={self.preinverse}"


def problem_configs(quick: bool) -> list[Config]:
    """The configurations of the benchmark problem; ``quick``: only the headline D = 1500, P = 5."""
    if quick:
        return [Config("digits", 1500, 5, task, pre) for task, pre in PATHS]
    configs = [Config("digits", d, p, task, pre) for d in (1500, 500) for p in (5, 3) for task, pre in PATHS]
    configs += [Config("color", 500, 5, task, pre) for task, pre in PATHS]
    return configs


@dataclass(frozen=True)
class Row:
    config: Config
    sigma: float
    images: int
    seconds_per_image: float
    float64_seconds_per_image: float | None  # lemmse's float64 path; None when not timed
    serial_tiles_seconds_per_image: float | None  # tiles in turn, threads inside operations; None: not timed
    gflops: float
    matmul_gflops: float
    screened_fraction: float
    rescored_fraction: float
    max_error: float

    @property
    def fraction(self) -> float:
        return self.gflops / self.matmul_gflops

    @property
    def speedup_vs_float64(self) -> float | None:
        if self.float64_seconds_per_image is None:
            return None
        return self.float64_seconds_per_image / self.seconds_per_image

    @property
    def speedup_vs_serial_tiles(self) -> float | None:
        if self.serial_tiles_seconds_per_image is None:
            return None
        return self.serial_tiles_seconds_per_image / self.seconds_per_image


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """Best square float32 matrix-multiply rate of this machine now, in GFLOP/s."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm up (thread pool, caches)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def load_problem(data_dir: Path):
    """The benchmark arrays as torch tensors; a clear error when a file is missing."""
    import numpy as np
    import torch

    from lemmse.errors import LemmseInputError

    arrays = {}
    for name in ("digits16", "color16", "test_noise"):
        path = data_dir / f"{name}.npy"
        if not path.is_file():
            raise LemmseInputError(f"--data {data_dir}: benchmark file {path.name} not found")
        arrays[name] = torch.from_numpy(np.load(path, allow_pickle=False))
    return arrays


def operator_options(task: str) -> dict:
    """The benchmark's operator parameters for ``task`` (7×7 hole, blur std 1)."""
    return {"inpainting": {"hole": HOLE}, "deconvolution": {"blur_std": BLUR_STD}}.get(task, {})


def measurements(arrays, config: Config, sigma: float, images: int):
    """Training set, and ``y = A x + σ·noise`` for the first ``images`` test images."""
    import torch

    from lemmse.operators import make_problem

    data = arrays["digits16" if config.dataset == "digits" else "color16"]
    start = DIGITS_TEST_START if config.dataset == "digits" else COLOR_TEST_START
    train = data[: config.train_size]
    x = data[start : start + images].to(torch.float64)
    channels, h, w = x.shape[1:]
    problem = make_problem(config.task, (h, w), **operator_options(config.task))
    noise = arrays["test_noise"][torch.arange(x.shape[0]) % arrays["test_noise"].shape[0], :channels]
    y = problem.A(x) + sigma * noise.to(torch.float64)
    return train, y.to(torch.float32)


def best_time(fn, repeats: int, device: str) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn`` and the last result."""
    import torch

    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_config(arrays, config: Config, *, sigma: float, images: int, check_images: int, repeats: int,
               device: str, float64_path: bool = True, tile_comparison: bool = True) -> Row:
    """Time one configuration (fast path, its tiles run in turn, and lemmse's float64 path) and check it
    against float64."""
    import torch

    from lemmse.estimators import estimate, tile_threads
    from lemmse.estimators.stream import float64_scores, score_stats

    train, y = measurements(arrays, config, sigma, images)
    kwargs = dict(task=config.task, estimator="lemmse", sigma=sigma, preinverse=config.preinverse,
                  patch=config.patch, device=device, **operator_options(config.task))
    rate = matmul_rate()
    with score_stats() as stats:
        best, out = best_time(lambda: estimate(train, y, **kwargs).xhat, repeats, device)
    serial = None
    if tile_comparison and device == "cpu" and torch.get_num_threads() > 1:
        with tile_threads.serial_tiles():
            serial, _ = best_time(lambda: estimate(train, y, **kwargs).xhat, repeats, device)
    slow = None
    if float64_path:
        with float64_scores():
            slow, _ = best_time(lambda: estimate(train, y, **kwargs).xhat, repeats, device)
    n = y.shape[0]
    check = min(check_images, n)
    ref = estimate(train, y[:check], dtype=torch.float64, **kwargs).xhat
    error = float((out[:check].to(torch.float64).cpu() - ref.cpu()).abs().max())
    channels, h, w = y.shape[1:]
    flops = 2.0 * (n * h * w) * (config.train_size * h * w) * channels * config.patch**2
    return Row(config, sigma, n, best / n, None if slow is None else slow / n, None if serial is None else serial / n,
               flops / best / 1e9, rate, stats.screened_fraction, stats.rescored_fraction, error)


@dataclass(frozen=True)
class DiagnosticsRow:
    """Best seconds of one configuration at one σ: estimate alone, + densities and sources, + all."""

    config: Config
    sigma: float
    images: int
    estimate_seconds: float
    lean_seconds: float
    full_seconds: float

    @property
    def lean_ratio(self) -> float:
        """Estimate with densities and source maps (``mass=False``) over the estimate alone."""
        return self.lean_seconds / self.estimate_seconds

    @property
    def full_ratio(self) -> float:
        """Estimate with every diagnostic over the estimate alone."""
        return self.full_seconds / self.estimate_seconds


def diagnostic_configs(quick: bool) -> list[Config]:
    paths = DIAGNOSTIC_PATHS[:1] if quick else DIAGNOSTIC_PATHS
    return [Config("digits", DIAGNOSTIC_TRAIN, DIAGNOSTIC_PATCH, task, pre) for task, pre in paths]


def run_diagnostics(arrays, config: Config, *, sigma: float, images: int, repeats: int,
                    device: str) -> DiagnosticsRow:
    """Time the estimate alone, with densities and sources, and with every diagnostic (interleaved)."""
    import torch

    from lemmse.estimators import estimate

    train, y = measurements(arrays, config, sigma, images)
    kwargs = dict(task=config.task, estimator="lemmse", sigma=sigma, preinverse=config.preinverse,
                  patch=config.patch, device=device, **operator_options(config.task))
    modes = {"estimate": {}, "lean": {"diagnostics": True, "mass": False}, "full": {"diagnostics": True}}
    best = dict.fromkeys(modes, math.inf)
    for _ in range(repeats):
        for mode, extra in modes.items():
            start = time.perf_counter()
            estimate(train, y, **kwargs, **extra)
            if device != "cpu":
                torch.cuda.synchronize()
            best[mode] = min(best[mode], time.perf_counter() - start)
    return DiagnosticsRow(config, sigma, y.shape[0], best["estimate"], best["lean"], best["full"])


def format_diagnostics(rows: list[DiagnosticsRow]) -> str:
    """A Markdown table of the diagnostics' cost, as ratios to the estimate alone."""
    lines = ["| configuration | σ | images | estimate s/image | + densities, sources (× estimate) | "
             "+ 99 % mass too (× estimate) |", "|" + "---|" * 6]
    for r in rows:
        lines.append(f"| {r.config.label} | {r.sigma:g} | {r.images} | {r.estimate_seconds / r.images:.4f} | "
                     f"{r.lean_ratio:.2f}× | {r.full_ratio:.2f}× |")
    return "\n".join(lines)


def format_table(rows: list[Row]) -> str:
    """A Markdown table of the rows."""
    head = ("| configuration | σ | images | s/image | s/image, float64 path | speed-up vs float64 path | "
            "speed-up vs tiles in turn | GFLOP/s | of fp32 matmul | screened in fp32 | rescored in float64 | "
            "max abs err vs float64 |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        slow = "—" if r.float64_seconds_per_image is None else f"{r.float64_seconds_per_image:.4f}"
        ratio = "—" if r.speedup_vs_float64 is None else f"{r.speedup_vs_float64:.2f}×"
        tiles = "—" if r.speedup_vs_serial_tiles is None else f"{r.speedup_vs_serial_tiles:.2f}×"
        lines.append(f"| {r.config.label} | {r.sigma:g} | {r.images} | {r.seconds_per_image:.4f} | {slow} | {ratio} | {tiles} | "
                     f"{r.gflops:.1f} | {100 * r.fraction:.1f} % (of {r.matmul_gflops:.0f}) | "
                     f"{100 * r.screened_fraction:.1f} % | {100 * r.rescored_fraction:.1f} % | {r.max_error:.1e} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run every configuration, print the table, optionally write it as CSV."""
    import torch

    from lemmse.errors import LemmseInputError
    from lemmse.estimators.api import resolve_device, validate_sigma

    if args.threads:
        torch.set_num_threads(args.threads)
    sigmas = [float(v) for v in validate_sigma(torch.tensor(args.sigma), len(args.sigma))]
    device = str(resolve_device(args.device))
    if args.rates_out is not None:  # the cost model's rates instead of the table (lemmse.cost)
        from lemmse.cost import bench_hook

        bench_hook(args.rates_out, config=args.rates_config, device=device, clock=args.rates_clock)
        return 0
    arrays = load_problem(args.data)
    if args.diagnostics:
        return _run_diagnostics(arrays, args, device)
    configs = problem_configs(args.quick)
    available = {"digits": arrays["digits16"].shape[0] - DIGITS_TEST_START,
                 "color": arrays["color16"].shape[0] - COLOR_TEST_START}
    for c in configs:
        if args.images > available[c.dataset]:
            raise LemmseInputError(f"--images {args.images} exceeds the {available[c.dataset]} {c.dataset} test images")
    log.info("%d configurations × %d σ, %d images each, %d thread(s), device %s",
             len(configs), len(sigmas), args.images, torch.get_num_threads(), device)
    rows = []
    for sigma in sigmas:
        for config in configs:
            row = run_config(arrays, config, sigma=sigma, images=args.images, check_images=args.check_images,
                             repeats=args.repeats, device=device, float64_path=not args.no_float64_path,
                             tile_comparison=not args.no_tile_comparison)
            log.info("%s σ=%g: %.4f s/image, %.1f GFLOP/s = %.1f %% of fp32 matmul, %.1f %% screened, "
                     "%.1f %% rescored, err %.1e", config.label, sigma, row.seconds_per_image, row.gflops,
                     100 * row.fraction, 100 * row.screened_fraction, 100 * row.rescored_fraction, row.max_error)
            rows.append(row)
    sys.stdout.write(format_table(rows) + "\n")
    if args.csv is not None:
        import pandas as pd

        frame = pd.DataFrame([{"dataset": r.config.dataset, "train_size": r.config.train_size,
                               "patch": r.config.patch, "task": r.config.task,
                               "preinverse": r.config.preinverse, "sigma": r.sigma, "images": r.images,
                               "seconds_per_image": r.seconds_per_image,
                               "float64_path_seconds_per_image": r.float64_seconds_per_image,
                               "speedup_vs_float64_path": r.speedup_vs_float64,
                               "serial_tiles_seconds_per_image": r.serial_tiles_seconds_per_image,
                               "speedup_vs_serial_tiles": r.speedup_vs_serial_tiles, "gflops": r.gflops,
                               "matmul_gflops": r.matmul_gflops, "fraction_of_matmul": r.fraction,
                               "screened_fraction": r.screened_fraction, "rescored_fraction": r.rescored_fraction,
                               "max_abs_error_vs_float64": r.max_error}
                              for r in rows])
        frame.to_csv(args.csv, index=False)
        log.info("wrote %s", args.csv)
    return 0


def _run_diagnostics(arrays, args: argparse.Namespace, device: str) -> int:
    """``--diagnostics``: the cost table of the diagnostics, optionally as CSV."""
    from lemmse.errors import LemmseInputError

    available = arrays["digits16"].shape[0] - DIGITS_TEST_START
    if args.images > available:
        raise LemmseInputError(f"--images {args.images} exceeds the {available} digits test images")
    rows = []
    for config in diagnostic_configs(args.quick):
        for sigma in DIAGNOSTIC_SIGMAS:
            row = run_diagnostics(arrays, config, sigma=sigma, images=args.images, repeats=args.repeats, device=device)
            log.info("%s σ=%g: estimate %.4f s/image, + densities and sources %.2fx, + 99 %% mass %.2fx",
                     config.label, sigma, row.estimate_seconds / row.images, row.lean_ratio, row.full_ratio)
            rows.append(row)
    sys.stdout.write(format_diagnostics(rows) + "\n")
    if args.csv is not None:
        import pandas as pd

        pd.DataFrame([{"dataset": r.config.dataset, "train_size": r.config.train_size, "patch": r.config.patch,
                       "task": r.config.task, "preinverse": r.config.preinverse, "sigma": r.sigma,
                       "images": r.images, "estimate_seconds": r.estimate_seconds,
                       "densities_sources_seconds": r.lean_seconds, "all_diagnostics_seconds": r.full_seconds,
                       "densities_sources_ratio": r.lean_ratio, "all_diagnostics_ratio": r.full_ratio}
                      for r in rows]).to_csv(args.csv, index=False)
        log.info("wrote %s", args.csv)
    return 0


DESCRIPTION = __doc__.split("\n\n", 1)[1].replace("``", "`")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's flags (shared by ``lemmse bench`` and ``scripts/bench_estimators.py``)."""
    from lemmse.cli.common import add_verbosity_flags, positive_int

    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                   help="folder holding digits16.npy, color16.npy and test_noise.npy. "
                        f"Default: {DEFAULT_DATA}.")
    p.add_argument("--sigma", type=float, nargs="+", default=[0.05],
                   help="noise level(s) σ of the measurements (image values in [0, 1]); several give one "
                        "row per σ (the float64-rescored fraction depends on σ). Default: 0.05.")
    p.add_argument("--images", type=positive_int, default=64,
                   help="measurements estimated per call (many at once; the authors' code takes one). "
                        "Default: 64.")
    p.add_argument("--check-images", type=positive_int, default=8,
                   help="how many of them are recomputed with float64 output, timed (the float64-path "
                        "columns) and compared (the error column). Default: 8.")
    p.add_argument("--repeats", type=positive_int, default=2, help="timed calls per configuration; the "
                   "best is reported. Default: 2.")
    p.add_argument("--quick", action="store_true",
                   help="only the headline configurations (digits, D = 1500, P = 5, four paths).")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads. Default: torch's choice (all cores).")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N. Default: cpu.")
    p.add_argument("--diagnostics", action="store_true",
                   help="instead of the table, time the LE-MMSE diagnostics against the estimate alone on their "
                        f"problem (digits, D = {DIAGNOSTIC_TRAIN}, P = {DIAGNOSTIC_PATCH}, σ in "
                        f"{', '.join(map(str, DIAGNOSTIC_SIGMAS))}; --quick: denoising only) and print the ratios. "
                        "16 to 32 --images are typical.")
    p.add_argument("--no-float64-path", action="store_true",
                   help="do not time lemmse's float64 path (halves the run; no speed-up column).")
    p.add_argument("--no-tile-comparison", action="store_true",
                   help="do not time the tiles run in turn, PyTorch's threads inside each operation (the "
                        "'speed-up vs tiles in turn' column; timed only on CPU with more than one thread).")
    p.add_argument("--csv", type=Path, default=None, metavar="OUT.csv",
                   help="also write the table as CSV (one row per configuration).")
    p.add_argument("--rates-out", type=Path, default=None, metavar="FILE",
                   help="instead of the table, measure the rates the cost model needs (GEMM and exp rates, "
                        "the engine's efficiency, seconds per training step, job start-up) and write them "
                        "to FILE (JSON) for `lemmse plan CONFIG --cost --rates FILE`.")
    p.add_argument("--rates-config", type=Path, default=None, metavar="CONFIG",
                   help="with --rates-out: calibrate on this workflow config's own networks and shard shape "
                        "(recommended). Default: the digits problem and each architecture's small preset.")
    p.add_argument("--rates-clock", choices=("wall", "cpu"), default="wall",
                   help="with --rates-out: seconds of elapsed time (default; what predicted hours mean) or CPU "
                        "seconds of all threads (to check predictions on a machine other work loads; compare "
                        "with the benchmark files' cpu_time).")
    add_verbosity_flags(p)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on the top-level ``subparsers``."""
    from lemmse.cli.common import HelpFormatter

    p = subparsers.add_parser("bench", help="time the LE-MMSE fast paths on the benchmark problem",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p
