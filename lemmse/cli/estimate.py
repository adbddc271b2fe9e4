"""``lemmse estimate``: run one estimator on measurements stored in .npy files.

Everything is checked before any computation (files, shapes, value ranges, flags that do not fit
the task or estimator, σ, patch size, device); the outputs are then written atomically (a
temporary file in the target directory, moved into place), so a failure never leaves a partial
``--out`` or ``--diagnostics`` behind.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

from lemmse.cli.common import (CliError, HelpFormatter, add_verbosity_flags, atomic_outputs,
                               check_output_path, load_images, parse_bytes, positive_int)
from lemmse.estimators.tiles import DEFAULT_MAX_MEMORY, KEY_BLOCK, MASS_KEY_BLOCK, MASS_QUERY_BLOCK, QUERY_BLOCK

log = logging.getLogger("lemmse.cli.estimate")

TASKS = ("denoising", "inpainting", "deconvolution")
ESTIMATORS = ("mmse", "emmse", "lemmse", "smoothed")
PREINVERSES = ("identity", "adjoint", "pinv", "tikhonov")
DTYPES = ("float32", "float64")
#: Defaults of the flags only the smoothed estimator takes (``None`` on the parser = not given).
SMOOTHED_DEFAULTS = {"smoothing": 0.0, "samples": 1, "seed": 0}

DESCRIPTION = """\
Compute a closed-form estimate x̂(y) of the clean images behind the measurements in Y.

Forward model: y = A x + e with e ~ N(0, σ² I), images with values in [0, 1], circular boundaries;
the estimator is x̂(y) = φ(B y) with B the pre-inverse (--preinverse). Estimators:
  mmse      MMSE of the empirical training distribution (a weighted average of whole training images)
  emmse     translation-equivariant MMSE (all cyclic shifts of every training image compete)
  lemmse    local-equivariant MMSE: each output pixel averages the centre pixels of all training
            patches, weighted by how well the P×P patch of B y around it matches them (--patch)
  smoothed  LE-MMSE averaged over K Monte-Carlo perturbations y + s·z (--smoothing, --samples, --seed)

Arrays are .npy files of floats shaped (count, C, H, W): TRAIN (D images) and Y (n measurements)
must share C, H and W. Problems are reported as one line `lemmse: error: ...` on stderr with exit
status 2, and nothing is written.
"""

EPILOG = """\
examples:
  lemmse estimate --train train.npy --y y.npy --task denoising --estimator lemmse --patch 5 \\
      --sigma 0.05 --out xhat.npy --diagnostics diag.npz
  lemmse estimate --train train.npy --y y.npy --task inpainting --hole 7 --preinverse pinv \\
      --estimator lemmse --patch 3 --sigma 0.2 --out xhat.npy
  lemmse estimate --train train.npy --y y.npy --task deconvolution --preinverse tikhonov --lam 0.01 \\
      --estimator emmse --sigma 0.05 --out xhat.npy --dtype float64 --max-memory 4GiB
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``estimate`` on the top-level ``subparsers``."""
    p = subparsers.add_parser("estimate", help="run an estimator on measurements stored in .npy files",
                              description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--train", required=True, type=Path, metavar="TRAIN.npy",
                      help="required. Training images, float array (D, C, H, W) with every value in [0, 1] "
                           "(checked). Used by every estimator.")
    data.add_argument("--y", required=True, type=Path, metavar="Y.npy",
                      help="required. Measurements y = A x + noise (not clipped), float array (n, C, H, W) "
                           "with the C, H, W of TRAIN; no NaN or inf.")
    data.add_argument("--out", required=True, type=Path, metavar="OUT.npy",
                      help="required. Where to write the estimate: an .npy array shaped like Y, of dtype "
                           "--dtype. Written atomically; an existing file is replaced only on success.")
    data.add_argument("--diagnostics", type=Path, metavar="DIAG.npz", default=None,
                      help="optional, --estimator lemmse only. Also write an .npz with the LE-MMSE "
                           "diagnostics (lemmse.estimators.api.DIAGNOSTICS): patch_log_density_paper (n, H, W) "
                           "float64 (the paper's convention: log-sum-exp of the logits, no constants), "
                           "patch_log_density (n, H, W) float64 (normalised, Gaussian constants included), "
                           "image_log_density_paper and image_log_density (n,) float64 (same two conventions "
                           "for the whole image), mass99 (n, H, W) int64 (fewest training patches holding 99%% "
                           "of the weight), mass99_observed_mean / _median (n,) float64 (over pixels whose "
                           "patch is not fully hidden), source (n, H, W) int64 (training image owning one "
                           "patch with >= 50%% of the weight, else -1), source_image (n, H, W) int64 (image "
                           "whose patches together hold >= 50%%, else -1). Costs one extra pass over the "
                           "training set. Default: not written.")

    model = p.add_argument_group("forward model")
    model.add_argument("--task", required=True, choices=TASKS,
                       help="required. The operator A: denoising (A = I), inpainting (A masks a centred "
                            "square hole, see --hole) or deconvolution (A blurs circularly with a Gaussian, "
                            "see --blur-std).")
    model.add_argument("--sigma", required=True, type=float, metavar="SIGMA",
                       help="required. Noise standard deviation σ > 0, in image-value units (images lie in "
                            "[0, 1]); one value for every measurement in Y (the Python API "
                            "lemmse.estimators.estimate also takes one σ per measurement).")
    model.add_argument("--hole", type=int, metavar="S", default=None,
                       help="inpainting only. Side in pixels of the centred square hole, covering rows and "
                            "columns [H//2 - S//2, H//2 - S//2 + S). Default: min(H, W)//2 - 1 (7 on 16×16, "
                            "15 on 32×32).")
    model.add_argument("--blur-std", type=float, metavar="S", default=None,
                       help="deconvolution only. Standard deviation in pixels of the isotropic Gaussian blur "
                            "kernel (same on every channel). Default: 1.0.")
    model.add_argument("--preinverse", choices=PREINVERSES, default="identity",
                       help="the pre-inverse B applied to y before matching: identity (physics-agnostic; "
                            "every task), adjoint (Aᵀ) and pinv (A⁺; inpainting and deconvolution), "
                            "tikhonov ((AᵀA + λI)⁻¹Aᵀ; deconvolution, needs --lam). Default: identity.")
    model.add_argument("--lam", type=float, metavar="L", default=None,
                       help="--preinverse tikhonov only (and required there). Tikhonov regularisation "
                            "λ > 0, dimensionless. No default.")

    est = p.add_argument_group("estimator")
    est.add_argument("--estimator", required=True, choices=ESTIMATORS,
                     help="required. mmse, emmse, lemmse or smoothed (see above).")
    est.add_argument("--patch", type=int, metavar="P", default=None,
                     help="lemmse and smoothed only (required there). Odd patch side in pixels, at most "
                          "min(H, W): the estimator's receptive field is P×P. No default.")
    est.add_argument("--smoothing", type=float, metavar="S", default=None,
                     help="smoothed only. Standard deviation s >= 0 of the Gaussian perturbation added to y, "
                          "in image-value units. Default: 0.0 (then identical to lemmse).")
    est.add_argument("--samples", type=positive_int, metavar="K", default=None,
                     help="smoothed only. Number K >= 1 of Monte-Carlo perturbations averaged. Default: 1.")
    est.add_argument("--seed", type=int, metavar="N", default=None,
                     help="smoothed only. Seed of the perturbations (results are reproducible). Default: 0.")

    run = p.add_argument_group("computation")
    run.add_argument("--device", default="cpu",
                     help="torch device to compute on: cpu, cuda or cuda:N. Default: cpu.")
    run.add_argument("--dtype", choices=DTYPES, default="float32",
                     help="dtype of the weights, sums and of OUT (scores are always computed in float64). "
                          "Default: float32.")
    run.add_argument("--max-memory", type=parse_bytes, metavar="BYTES", default=DEFAULT_MAX_MEMORY,
                     help="upper bound on the working memory of the computation: a byte count or a size "
                          "such as 512MiB, 2GiB (KiB/MiB/GiB and K/M/G are powers of 1024, KB/MB/GB of 1000). "
                          "Measurements are processed in chunks that fit. Default: 1GiB.")
    run.add_argument("--key-block", type=positive_int, metavar="N", default=None,
                     help="about how many training patches (keys) are scored per block of the streaming "
                          "loop (whole training images per block). Changes speed, not results "
                          f"(beyond rounding). Default: {KEY_BLOCK} ({MASS_KEY_BLOCK} with the 99 %%-mass "
                          "diagnostic).")
    run.add_argument("--query-block", type=positive_int, metavar="N", default=None,
                     help="how many measured patches (queries) are scored per tile. Changes speed, not "
                          f"results (beyond rounding). Default: {QUERY_BLOCK} ({MASS_QUERY_BLOCK} with the 99 %%-mass "
                          "diagnostic).")
    add_verbosity_flags(p)
    p.set_defaults(func=run_estimate)
    return p


def _check_flag_fit(args: argparse.Namespace) -> None:
    """Refuse flags the chosen estimator would silently ignore."""
    if args.estimator != "smoothed":
        for name in SMOOTHED_DEFAULTS:
            if getattr(args, name) is not None:
                raise CliError(f"--{name} is used only by --estimator smoothed, not --estimator {args.estimator}")
    if args.estimator not in ("lemmse", "smoothed") and args.patch is not None:
        raise CliError(f"--patch {args.patch} is used only by --estimator lemmse or smoothed, "
                       f"not --estimator {args.estimator}")
    if args.diagnostics is not None and args.estimator != "lemmse":
        raise CliError(f"--diagnostics is available with --estimator lemmse only, not --estimator {args.estimator}")
    for name, value in SMOOTHED_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def _check_paths(args: argparse.Namespace) -> None:
    outputs = [("--out", args.out)] + ([("--diagnostics", args.diagnostics)] if args.diagnostics else [])
    inputs = {args.train.resolve(): "--train", args.y.resolve(): "--y"}
    for flag, path in outputs:
        check_output_path(path, flag)
        if path.resolve() in inputs:
            raise CliError(f"{flag} {path} is the same file as {inputs[path.resolve()]}; refusing to overwrite an input")
    if args.diagnostics is not None and args.diagnostics.resolve() == args.out.resolve():
        raise CliError(f"--diagnostics {args.diagnostics} and --out {args.out} name the same file")


def run_estimate(args: argparse.Namespace) -> int:
    """Validate everything, compute, write OUT (and DIAG) atomically. Returns the exit status."""
    import numpy as np
    import torch

    from lemmse.estimators import estimate
    from lemmse.estimators.api import resolve_device, validate_patch, validate_sigma
    from lemmse.operators import make_problem

    _check_flag_fit(args)
    _check_paths(args)
    train = load_images(args.train, "training images", "--train")
    lo, hi = float(train.min()), float(train.max())
    if lo < 0.0 or hi > 1.0:
        raise CliError(f"--train {args.train}: training images must lie in [0, 1], found min {lo:.6g} and max {hi:.6g}")
    y = load_images(args.y, "measurements", "--y")
    if y.shape[1:] != train.shape[1:]:
        raise CliError(f"--y {args.y}: images are (C, H, W) = {y.shape[1:]} but --train {args.train} "
                       f"images are {train.shape[1:]}")
    image_size = (int(y.shape[2]), int(y.shape[3]))
    # The same checks estimate() starts with, done here so no log line precedes an error report.
    problem = make_problem(args.task, image_size, hole=args.hole, blur_std=args.blur_std)
    problem.preinverse(args.preinverse, args.lam)
    validate_sigma(args.sigma, y.shape[0])
    validate_patch(args.patch, image_size, args.estimator)
    if args.estimator == "smoothed" and not (math.isfinite(args.smoothing) and args.smoothing >= 0):
        raise CliError(f"--smoothing must be a finite number >= 0, got {args.smoothing}")
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)

    n, channels, h, w = y.shape
    log.info("%s, task %s (B = %s), %d measurement(s) of %dx%dx%d, %d training image(s), sigma=%g%s, on %s in %s",
             args.estimator, args.task, args.preinverse, n, channels, h, w, train.shape[0], args.sigma,
             f", P={args.patch}" if args.patch else "", device, args.dtype)
    start = time.perf_counter()
    result = estimate(
        torch.from_numpy(train), torch.from_numpy(y), task=args.task, estimator=args.estimator,
        sigma=args.sigma, preinverse=args.preinverse, patch=args.patch, hole=args.hole,
        blur_std=args.blur_std, lam=args.lam, smoothing=args.smoothing, samples=args.samples,
        seed=args.seed, diagnostics=args.diagnostics is not None, device=device, dtype=dtype,
        max_memory=args.max_memory, key_block=args.key_block, query_block=args.query_block,
        progress=sys.stderr.isatty() and not args.quiet,
    )
    seconds = time.perf_counter() - start
    log.info("computed in %.3f s (%.4f s per measurement)", seconds, seconds / n)

    xhat = result.xhat.detach().to("cpu", dtype).numpy()
    if xhat.shape != y.shape:  # the API promises y's shape; never write anything else
        raise RuntimeError(f"estimate returned shape {xhat.shape} for y of shape {y.shape}")
    with atomic_outputs() as stage:
        stage(args.out, lambda f: np.save(f, xhat, allow_pickle=False))
        if args.diagnostics is not None:
            from lemmse.estimators.api import DIAGNOSTICS

            diag = {key: result.diagnostics[key].detach().cpu().numpy() for key in DIAGNOSTICS}
            stage(args.diagnostics, lambda f: np.savez(f, **diag))
    log.info("wrote %s%s", args.out, f" and {args.diagnostics}" if args.diagnostics else "")
    return 0
