"""``lemmse infer``: run a trained network over a measurement store.

Reads ``y (split, image, sigma, c, h, w)`` from --measurements, applies the model's pre-inverse
B, runs the EMA network conditioned on each σ and writes ``xhat`` with the same dims and
coordinates, and ``psnr_truth (split, image, sigma)`` against the clean images, to --out (a Zarr
store built in a temporary directory and renamed into place when complete).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lemmse.cli.common import CliError, HelpFormatter, add_verbosity_flags, positive_int

DESCRIPTION = """\
Evaluate a trained network x̂ = f(B y, σ) on every measurement of a measurement store.

--model is a model directory written by `lemmse train` (or its model.pt); its EMA weights are used.
--measurements holds y with dims (split, image, sigma, c, h, w) and attrs task / hole / blur_std,
which must match the model's, and names its data store (the clean x; lemmse.data builds such stores).
--out receives xhat float32 with the same dims and coordinates, psnr_truth (split, image, sigma)
float64 = PSNR(xhat, x), plus provenance attrs; it appears only once complete (an existing store is
replaced on success).
"""

EPILOG = """\
example:
  lemmse infer --model results/models/digits/denoising/identity/unet/P5/N1000/sigma0-1 \\
      --measurements results/measurements/digits/denoising.zarr --out xhat.zarr
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``infer`` on the top-level ``subparsers``."""
    p = subparsers.add_parser("infer", help="run a trained network over a measurement store",
                              description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, type=Path, metavar="DIR",
                   help="required. Model directory (or its model.pt) from `lemmse train`.")
    p.add_argument("--measurements", required=True, type=Path, metavar="STORE",
                   help="required. Measurement store (.zarr) with y (split, image, sigma, c, h, w).")
    p.add_argument("--out", required=True, type=Path, metavar="STORE",
                   help="required. Output store (.zarr) for xhat (split, image, sigma, c, h, w).")
    p.add_argument("--split", action="append", choices=("train", "test"), default=None,
                   help="only this split (repeatable). Default: every split of the store.")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="images per forward pass and per output chunk. Default: 256.")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present). Default: auto.")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    add_verbosity_flags(p)
    p.set_defaults(func=run_infer)
    return p


def run_infer(args: argparse.Namespace) -> int:
    import torch

    from lemmse.estimators.api import resolve_device
    from lemmse.training import infer_store

    if args.out.resolve() == args.measurements.resolve():
        raise CliError(f"--out {args.out} is the measurement store; refusing to overwrite an input")
    device = resolve_device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                            "cpu" if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    infer_store(args.model, args.measurements, args.out, device=device, batch_size=args.batch_size,
                splits=args.split, progress=not args.quiet)
    return 0
