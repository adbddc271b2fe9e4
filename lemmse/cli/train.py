"""``lemmse train``: train one network (UNet, ResNet or PatchMLP) into a model directory.

A thin front of :func:`lemmse.training.train`: the flags fill a :class:`TrainConfig`, every
value is checked before any work (one line ``lemmse: error: ...``, exit 2), and the run writes
``training_options.json``, ``stats.jsonl`` and ``model.pt`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lemmse.cli.common import (EXIT_FAILURE, CliError, HelpFormatter, add_verbosity_flags, load_images,
                               positive_int, report_error)

log = logging.getLogger("lemmse.cli.train")

ARCHS = ("unet", "resnet", "patchmlp")
TASKS = ("denoising", "inpainting", "deconvolution")
PREINVERSES = ("identity", "adjoint", "pinv", "tikhonov")

DESCRIPTION = """\
Train a translation-equivariant network with an exact P×P receptive field to invert y = A x + σ e.

The network f(B y, σ) sees the pre-inverse B of the measurement and the noise level σ; samples
y = A x + σ ε are made on the fly from the clean training images (σ fixed with --sigma, or drawn
uniformly per sample from [--sigma-min, --sigma-max], the paper's noise-conditioned setting).
Adam with a cosine decay from --lr to --lr-min, gradient clipping, EMA weights (used by
`lemmse infer`), MSE loss. --out receives training_options.json (the resolved config, written
before step 1), stats.jsonl (loss / lr / grad-norm) and model.pt (one dict: weights, EMA weights,
optimiser state, step, RNG states, config), saved every --checkpoint-every steps. --resume
continues exactly where a killed run stopped (bitwise on CPU).
"""

EPILOG = """\
examples:
  lemmse train --dry-run --arch all --patch 5 --preset paper        # parameter counts
  lemmse train --train-data results/data/digits.zarr --train-size 1000 --out runs/digits-unet \\
      --task denoising --arch unet --patch 5 --sigma-min 0 --sigma-max 1 --steps 2000
  lemmse train --train-data train.npy --out runs/inp --task inpainting --preinverse pinv \\
      --arch resnet --patch 7 --model-option width=64 --steps 500 --resume
"""


def _model_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"value of {key!r} is not JSON (e.g. 32 or [16,32]): {value!r}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` on the top-level ``subparsers``."""
    p = subparsers.add_parser("train", help="train a UNet / ResNet / PatchMLP with an exact P×P receptive field",
                              description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    data = p.add_argument_group("data and output")
    data.add_argument("--train-data", type=Path, metavar="PATH",
                      help="training images in [0, 1]: an .npy (N, C, H, W) float array, or a dataset store "
                           "(.zarr) whose `train` variable is used. Required unless --dry-run.")
    data.add_argument("--train-size", type=positive_int, metavar="N",
                      help="use the first N training images (default: all)")
    data.add_argument("--out", type=Path, metavar="DIR",
                      help="model directory (created). Required unless --dry-run.")
    data.add_argument("--resume", action="store_true",
                      help="continue from DIR/model.pt (a fresh start when there is none); refused if its "
                           "config differs. Without it an existing model.pt is an error.")
    prob = p.add_argument_group("inverse problem")
    prob.add_argument("--task", choices=TASKS, default="denoising", help="forward operator A. Default: denoising.")
    prob.add_argument("--preinverse", choices=PREINVERSES, default="identity",
                      help="B applied to y before the network. Default: identity.")
    prob.add_argument("--lam", type=float, help="Tikhonov λ (--preinverse tikhonov only)")
    prob.add_argument("--hole", type=int, help="inpainting hole side (default min(H, W)//2 - 1)")
    prob.add_argument("--blur-std", type=float, help="deconvolution Gaussian std (default 1.0)")
    prob.add_argument("--sigma", type=float, help="a fixed noise level (sets --sigma-min = --sigma-max)")
    prob.add_argument("--sigma-min", type=float, default=None, help="lowest training σ. Default: 0.")
    prob.add_argument("--sigma-max", type=float, default=None, help="highest training σ. Default: 1.")
    net = p.add_argument_group("network")
    net.add_argument("--arch", default="unet", choices=ARCHS + ("all",),
                     help="architecture; `all` only with --dry-run. Default: unet.")
    net.add_argument("--patch", type=int, default=5, metavar="P",
                     help="receptive field P×P (odd, 3 <= P <= min(H, W)). Default: 5.")
    net.add_argument("--preset", choices=("small", "paper"), default="small",
                     help="width/depth: `small` trains on a CPU in minutes, `paper` is the paper's ~4 M "
                          "parameters. Default: small.")
    net.add_argument("--model-option", type=_model_option, action="append", default=[], metavar="KEY=VALUE",
                     help="override one option of the preset (JSON value), repeatable: unet channels=[16,32] "
                          "layers_per_block=1 norm_groups=4; resnet width=32; patchmlp width=64 hidden=128 "
                          "blocks=2 emb_dim=64")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--steps", type=positive_int, default=1000, help="optimiser steps. Default: 1000.")
    opt.add_argument("--batch-size", type=positive_int, default=32, help="images per step. Default: 32.")
    opt.add_argument("--lr", type=float, default=1e-3, help="initial learning rate. Default: 1e-3.")
    opt.add_argument("--lr-min", type=float, default=1e-6, help="cosine floor. Default: 1e-6.")
    opt.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm. Default: 1.")
    opt.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay. Default: 0.999.")
    opt.add_argument("--ema-start", type=int, default=1000,
                     help="EMA = weights until this step. Default: 1000.")
    opt.add_argument("--ema-every", type=positive_int, default=5, help="EMA update period. Default: 5.")
    opt.add_argument("--seed", type=int, default=0, help="seeds initialisation, data order, σ and noise. Default: 0.")
    run = p.add_argument_group("run")
    run.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints. Default: 500.")
    run.add_argument("--log-every", type=positive_int, default=10, help="steps per stats.jsonl line. Default: 10.")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present). Default: auto.")
    run.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--dry-run", action="store_true",
                     help="check everything, print the parameter count(s) and the resolved options, train nothing")
    run.add_argument("--channels", type=positive_int, default=3,
                     help="image channels for --dry-run without --train-data. Default: 3.")
    run.add_argument("--image-size", type=positive_int, default=32, metavar="S",
                     help="S×S images for --dry-run without --train-data. Default: 32.")
    add_verbosity_flags(p)
    p.set_defaults(func=run_train)
    return p


def load_training_images(path: Path, count: int | None):
    """``(N, C, H, W)`` float32 from an .npy or a dataset store (``train`` variable)."""
    import numpy as np

    if path.suffix == ".zarr" or path.is_dir():
        if not path.exists():
            raise CliError(f"--train-data {path}: no such store")
        from lemmse.data import load_split
        images = load_split(path, "train", count)
    else:
        images = load_images(path, "training images", "--train-data")
        if count is not None:
            if count > images.shape[0]:
                raise CliError(f"--train-size {count} but --train-data {path} holds {images.shape[0]} images")
            images = images[:count]
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise CliError(f"--train-data {path}: images must lie in [0, 1], found min {lo:.6g} and max {hi:.6g}")
    return np.ascontiguousarray(images, dtype=np.float32)


def _config(args: argparse.Namespace, arch: str):
    from lemmse.training import TrainConfig

    if args.sigma is not None and (args.sigma_min is not None or args.sigma_max is not None):
        raise CliError("give either --sigma or --sigma-min/--sigma-max, not both")
    lo = args.sigma if args.sigma is not None else (0.0 if args.sigma_min is None else args.sigma_min)
    hi = args.sigma if args.sigma is not None else (1.0 if args.sigma_max is None else args.sigma_max)
    return TrainConfig(task=args.task, preinverse=args.preinverse, lam=args.lam, hole=args.hole,
                       blur_std=args.blur_std, arch=arch, patch=args.patch, preset=args.preset,
                       model_options=dict(args.model_option), sigma_min=lo, sigma_max=hi, steps=args.steps,
                       batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min, grad_clip=args.grad_clip,
                       ema_decay=args.ema_decay, ema_start=args.ema_start, ema_every=args.ema_every,
                       checkpoint_every=args.checkpoint_every, log_every=args.log_every, seed=args.seed)


def _dry_run(args: argparse.Namespace, images) -> int:
    import numpy as np

    from lemmse.models import count_parameters
    from lemmse.training import resolve_config
    from lemmse.training.loop import model_from_config

    if images is None:  # a stand-in with the shape the flags describe
        images = np.zeros((1, args.channels, args.image_size, args.image_size), dtype=np.float32)
    for arch in (ARCHS if args.arch == "all" else (args.arch,)):
        resolved = resolve_config(_config(args, arch), images)
        n = count_parameters(model_from_config(resolved))
        sys.stdout.write(f"{arch} P={args.patch} preset={args.preset} channels={resolved['channels']}: "
                         f"{n:,} parameters ({n / 1e6:.2f} M); options {json.dumps(resolved['model_options'])}\n")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import torch

    from lemmse.estimators.api import resolve_device
    from lemmse.training import TrainingDivergedError, TrainingInterrupted, train

    if args.arch == "all" and not args.dry_run:
        raise CliError("--arch all is only for --dry-run")
    if not args.dry_run:
        for flag, value in (("--train-data", args.train_data), ("--out", args.out)):
            if value is None:
                raise CliError(f"{flag} is required (unless --dry-run)")
        if args.out.exists() and not args.out.is_dir():
            raise CliError(f"--out {args.out}: exists and is not a directory")
    images = None if args.train_data is None else load_training_images(args.train_data, args.train_size)
    if args.dry_run:
        return _dry_run(args, images)
    config = _config(args, args.arch)
    device = resolve_device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                            "cpu" if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = train(args.out, config, images, device=device, resume=args.resume, progress=not args.quiet)
    except TrainingDivergedError as err:
        report_error(err)
        return EXIT_FAILURE
    except TrainingInterrupted as err:  # checkpointed on SIGUSR1/SIGTERM: rerun with --resume
        report_error(err)
        return err.exit_code
    log.info("trained %s to step %d (last logged loss %s)", args.out, result.step, result.loss)
    return 0
