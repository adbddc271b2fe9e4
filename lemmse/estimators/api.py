r"""One entry point, :func:`estimate`, for every estimator of MATH.md.

It validates everything first (one :class:`~lemmse.errors.LemmseInputError` naming the value),
then dispatches to the exact fast path for the case the pre-inverse falls into.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lemmse.errors import LemmseInputError
from lemmse.estimators.names import (DIAGNOSTIC_MAPS, DIAGNOSTIC_SUMMARIES, DIAGNOSTICS,  # noqa: F401 (re-exported)
                                     MASS_DIAGNOSTICS)
from lemmse.estimators.tiles import (DEFAULT_MAX_MEMORY, KEY_BLOCK, QUERY_BLOCK,  # noqa: F401 (re-exported)
                                     stream_blocks)
from lemmse.operators import PREINVERSES, TASKS, InverseProblem, make_problem
from lemmse.operators.linear_maps import CircularLinearMap

ESTIMATORS = ("mmse", "emmse", "lemmse", "smoothed")


@dataclass
class EstimateResult:
    """Estimator output and, when requested, the LE-MMSE diagnostics.

    ``xhat`` has the shape of ``y``. ``diagnostics`` (LE-MMSE only, on request) holds, for each
    measurement (names in :data:`DIAGNOSTICS`):

    * ``patch_log_density_paper`` ``(n, H, W)`` float64 — the paper's convention
      ``s_{n'} = log Σ_{d,n} exp(-½‖Q_{n'}By - Q_nBAx_d‖²_{Σ⁺}/σ²)`` (no Gaussian constants, no
      ``1/(D·H·W)``): what Fig. 6 and 17 plot;
    * ``patch_log_density`` ``(n, H, W)`` float64 — the normalised density
      ``log (1/(D·H·W)) Σ_{d,n} N(Q_{n'}y; Q_nAx_d, σ²Q_nQ_nᵀ)`` (constants included);
    * ``image_log_density_paper`` ``(n,)`` float64 — ``log Σ_d exp(-‖y - Ax_d‖²/2σ²)``;
    * ``image_log_density`` ``(n,)`` float64 — ``log (1/D) Σ_d N(y; A x_d, σ² I)``;
    * ``mass99`` ``(n, H, W)`` int64 — fewest training patches holding 99 % of the weight
      (an upper bound, exact up to the bound of :mod:`lemmse.estimators.mass`);
    * ``mass99_observed_mean``, ``mass99_observed_median`` ``(n,)`` float64 — its mean and median
      over the observed pixels (stratum rank > 0; every pixel for B = I);
    * ``source`` ``(n, H, W)`` int64 — the training image owning a single patch with ≥ 50 % of
      the weight at the pixel, else -1 (paper §D.5);
    * ``source_image`` ``(n, H, W)`` int64 — the training image whose patches together hold
      ≥ 50 % of the weight, else -1.
    """

    xhat: torch.Tensor
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamOptions:
    """How the work is cut: memory bound, block sizes, device, dtype, progress bar."""

    device: torch.device
    dtype: torch.dtype
    max_memory: int = DEFAULT_MAX_MEMORY
    key_block: int = KEY_BLOCK
    query_block: int = QUERY_BLOCK
    progress: bool = False


def validate_data(train: torch.Tensor, y: torch.Tensor) -> None:
    """Shape, channel, emptiness and finiteness checks naming the offending array."""
    for name, arr in (("training set", train), ("y", y)):
        if not isinstance(arr, torch.Tensor) or arr.ndim != 4:
            shape = tuple(arr.shape) if hasattr(arr, "shape") else type(arr).__name__
            raise LemmseInputError(f"{name} must be a (count, C, H, W) array, got shape {shape}")
        if not arr.is_floating_point():
            raise LemmseInputError(f"{name} must hold floats, got dtype {arr.dtype}")
    if train.shape[0] == 0:
        raise LemmseInputError("training set is empty (0 images)")
    if y.shape[0] == 0:
        raise LemmseInputError("y holds no measurement (0 images)")
    if train.shape[1:] != y.shape[1:]:
        raise LemmseInputError(
            f"y images have shape {tuple(y.shape[1:])} but training images have {tuple(train.shape[1:])} "
            "(channels, height and width must match)"
        )
    for name, arr in (("training set", train), ("y", y)):
        bad = ~torch.isfinite(arr)
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise LemmseInputError(f"{name} contains NaN or inf (first at index {idx})")


def validate_sigma(sigma: float | torch.Tensor, count: int) -> torch.Tensor:
    """σ as a float64 vector of length ``count`` (a scalar is broadcast); must be finite and > 0."""
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).cpu()
    if s.numel() == 1:
        s = s.expand(count)
    if s.numel() != count:
        raise LemmseInputError(f"sigma has {s.numel()} values for {count} measurements")
    bad = ~(torch.isfinite(s) & (s > 0))
    if bool(bad.any()):
        raise LemmseInputError(f"sigma must be finite and > 0, got sigma={float(s[bad][0])!r}")
    return s.clone()


def validate_patch(patch: int | None, image_size: tuple[int, int], estimator: str) -> None:
    if estimator not in ("lemmse", "smoothed"):
        return
    if patch is None:
        raise LemmseInputError(f"estimator {estimator!r} needs a patch size (--patch)")
    if not isinstance(patch, int) or isinstance(patch, bool) or patch <= 0 or patch % 2 == 0:
        raise LemmseInputError(f"patch size must be a positive odd integer, got patch={patch!r}")
    if patch > min(image_size):
        raise LemmseInputError(f"patch={patch} is larger than the {image_size[0]}x{image_size[1]} image")


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise LemmseInputError(f"unknown device {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LemmseInputError(f"device {device!r} requested but CUDA is not available")
    return dev


def estimate(
    train: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str,
    estimator: str,
    sigma: float | torch.Tensor,
    preinverse: str = "identity",
    patch: int | None = None,
    hole: int | None = None,
    blur_std: float | None = None,
    lam: float | None = None,
    smoothing: float = 0.0,
    samples: int = 1,
    seed: int = 0,
    diagnostics: bool = False,
    mass: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    max_memory: int = DEFAULT_MAX_MEMORY,
    key_block: int | None = None,
    query_block: int | None = None,
    progress: bool = False,
) -> EstimateResult:
    """Compute ``x̂(y)`` for a batch of measurements ``y`` ``(n, C, H, W)``.

    ``train`` ``(D, C, H, W)`` in [0, 1] is the training set; ``sigma`` a scalar or one value per
    measurement. ``estimator`` is ``mmse``, ``emmse``, ``lemmse`` or ``smoothed`` (the
    Monte-Carlo smoothed LE-MMSE ``E_z x̂(y + s z)`` with ``samples`` draws from ``seed``).
    Scores are computed in float64 whatever ``dtype``; ``dtype`` is that of the weights, sums and
    output. ``diagnostics`` adds the LE-MMSE diagnostics (:class:`EstimateResult`); ``mass=False``
    leaves out the three of :data:`MASS_DIAGNOSTICS` and the 99 %-mass histogram that gives them.
    ``max_memory`` (bytes) bounds the working set; ``key_block``/``query_block`` set the
    tile of the streaming loop (results do not depend on them beyond rounding; default
    :func:`stream_blocks`).
    """
    if task not in TASKS:
        raise LemmseInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if preinverse not in PREINVERSES:
        raise LemmseInputError(f"unknown pre-inverse {preinverse!r}; choose one of {', '.join(PREINVERSES)}")
    if estimator not in ESTIMATORS:
        raise LemmseInputError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if dtype not in (torch.float32, torch.float64):
        raise LemmseInputError(f"dtype must be float32 or float64, got {dtype}")
    validate_data(train, y)
    image_size = (int(y.shape[-2]), int(y.shape[-1]))
    problem = make_problem(task, image_size, hole=hole, blur_std=blur_std)
    B = problem.preinverse(preinverse, lam)
    return estimate_with(train, y, problem, B, estimator=estimator, sigma=sigma, patch=patch,
                         smoothing=smoothing, samples=samples, seed=seed, diagnostics=diagnostics,
                         mass=mass, device=device, dtype=dtype, max_memory=max_memory, key_block=key_block,
                         query_block=query_block, progress=progress)


def estimate_with(
    train: torch.Tensor,
    y: torch.Tensor,
    problem: InverseProblem,
    B: CircularLinearMap,
    *,
    estimator: str,
    sigma: float | torch.Tensor,
    patch: int | None = None,
    smoothing: float = 0.0,
    samples: int = 1,
    seed: int = 0,
    diagnostics: bool = False,
    mass: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    max_memory: int = DEFAULT_MAX_MEMORY,
    key_block: int | None = None,
    query_block: int | None = None,
    progress: bool = False,
) -> EstimateResult:
    """:func:`estimate` with an already built operator ``problem`` and pre-inverse ``B``."""
    from lemmse.estimators import emmse, lemmse as le, mmse, smoothed

    if estimator not in ESTIMATORS:
        raise LemmseInputError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    validate_data(train, y)
    if tuple(y.shape[-2:]) != problem.image_size:
        raise LemmseInputError(f"y images are {tuple(y.shape[-2:])} but the operator was built for {problem.image_size}")
    validate_patch(patch, problem.image_size, estimator)
    sig = validate_sigma(sigma, y.shape[0])
    if estimator == "smoothed":
        if not (isinstance(smoothing, (int, float)) and math.isfinite(smoothing) and smoothing >= 0):
            raise LemmseInputError(f"smoothing must be a finite number >= 0, got smoothing={smoothing!r}")
        if not isinstance(samples, int) or samples < 1:
            raise LemmseInputError(f"samples must be an integer >= 1, got samples={samples!r}")
    if diagnostics and estimator != "lemmse":
        raise LemmseInputError(f"diagnostics are defined for the LE-MMSE only, not estimator {estimator!r}")
    key_block, query_block = stream_blocks(diagnostics and mass and estimator == "lemmse", key_block, query_block)
    for name, value in (("max_memory", max_memory), ("key_block", key_block), ("query_block", query_block)):
        if not isinstance(value, int) or value < 1:
            raise LemmseInputError(f"{name} must be a positive integer, got {name}={value!r}")
    opts = StreamOptions(device=resolve_device(device), dtype=dtype, max_memory=max_memory,
                         key_block=key_block, query_block=query_block, progress=progress)
    problem = problem.to(opts.device)
    B = B.to(opts.device)
    if estimator == "mmse":
        return EstimateResult(mmse.mmse(train, y, problem, B, sig, opts))
    if estimator == "emmse":
        return EstimateResult(emmse.emmse(train, y, problem, B, sig, opts))
    if estimator == "lemmse":
        return le.lemmse(train, y, problem, B, patch, sig, opts, diagnostics=diagnostics, mass=mass)
    return smoothed.smoothed_lemmse(train, y, problem, B, patch, sig, opts, smoothing=float(smoothing),
                                    samples=samples, seed=seed)
