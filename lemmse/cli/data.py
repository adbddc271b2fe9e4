"""``lemmse data``: prepare dataset stores, build measurement stores, describe a store.

Every check (dataset name, config keys and values, files, σ list, task parameters) runs before
any work, and stores are built in a temporary folder next to the target and renamed into place
only when complete, so a failure never leaves a store that looks finished.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lemmse.cli.common import CliError, HelpFormatter, add_verbosity_flags, positive_int

#: Same names as ``lemmse.data.DATASETS`` (kept here so ``--help`` imports nothing heavy; a test checks).
DATASET_NAMES = ("digits", "photos", "faces", "fashion_mnist", "cifar10", "ffhq")
TASKS = ("denoising", "inpainting", "deconvolution")

DESCRIPTION = """\
Datasets and measurements, as Zarr stores that `xr.open_zarr(PATH)` opens.

  prepare  DATASET --out results/data/DATASET.zarr        images -> train/test store
  measure  --data DATA.zarr --task T --sigma S... --n-eval N --out results/measurements/DATASET/T.zarr
  info     PATH                                             shapes, split sizes, provenance

Datasets: digits, photos, faces (real images bundled with scikit-learn/scikit-image: no download),
fashion_mnist, cifar10, ffhq (read from their upstream files under --root).
"""

PREPARE_DESCRIPTION = """\
Prepare DATASET into a store with train (train_image, c, h, w) and test (test_image, c, h, w),
float32 in [0, 1], provenance (source, licence, recipe, split rule, SHA-256 of the arrays, OOD
partner) in its attributes. The same command always gives byte-identical arrays.

  digits         scikit-learn digits / 16, 2x bilinear upsample to 16x16 (or 8); split 1500 / 297
  photos         16x16 (or 32x32) colour tiles of scikit-image photos; split 1000 / 100 at 16
  faces          scikit-image's 100 LFW face crops, box-resized to 8..25 (default 16); split 80 / 20
  fashion_mnist  idx-ubyte files (raw or .gz) under --root; 28x28 or zero-padded 32x32
  cifar10        python pickle batches under --root (cifar-10-batches-py); 32x32 (or 16)
  ffhq           a folder (recursive) or .zip of PNGs under --root, sorted by path; box-resized

Config comes from --config (a YAML mapping of the keys below) and the flags, flags winning;
keys a dataset does not accept are refused.
"""

MEASURE_DESCRIPTION = """\
Build the measurement store y (split, image, sigma, c, h, w) = A x + sigma z (float32, not
clipped) for the first N-EVAL images of each split of DATA, every sigma, one task. The noise z is
seeded per (dataset, split, image, sigma) from --seed, so y does not depend on how the work is
split. The clean x is not copied: the store records the data store's path and hash.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` (with ``prepare``, ``measure``, ``info``) on the top-level ``subparsers``."""
    p = subparsers.add_parser("data", help="prepare datasets and measurements (Zarr stores), describe a store",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", title="subcommands", required=True)

    prep = sub.add_parser("prepare", help="prepare a dataset store", description=PREPARE_DESCRIPTION,
                          formatter_class=HelpFormatter,
                          epilog="examples:\n  lemmse data prepare digits --out results/data/digits.zarr\n"
                                 "  lemmse data prepare cifar10 --root /data/cifar --train-size 10000 "
                                 "--out results/data/cifar10.zarr\n")
    prep.add_argument("dataset", metavar="DATASET", help=f"one of {', '.join(DATASET_NAMES)}")
    prep.add_argument("--out", required=True, type=Path, metavar="PATH.zarr",
                      help="required. The store to write; an existing one is replaced only on success.")
    prep.add_argument("--config", type=Path, metavar="FILE.yaml", default=None,
                      help="YAML mapping of config keys (resolution, train_size, test_size, test_start, "
                           "grayscale, root, download, ood). Default: none.")
    prep.add_argument("--resolution", type=positive_int, metavar="R", default=None,
                      help="image side in pixels. Default: the dataset's (16; 32 for the real ones).")
    prep.add_argument("--train-size", type=positive_int, metavar="N", default=None,
                      help="number of training images (the first N of the training pool). Default: the dataset's.")
    prep.add_argument("--test-size", type=positive_int, metavar="N", default=None,
                      help="number of test images. Default: the dataset's.")
    prep.add_argument("--test-start", type=int, metavar="N", default=None,
                      help="digits, photos, faces, ffhq: index in the source's order where the test images "
                           "start (the training images are the pool before it). Default: the dataset's.")
    prep.add_argument("--grayscale", action="store_true", default=None,
                      help="photos only: keep the luma (0.2125 R + 0.7154 G + 0.0721 B), one channel.")
    prep.add_argument("--root", type=Path, metavar="DIR", default=None,
                      help="fashion_mnist, cifar10, ffhq: folder with the upstream files (ffhq: or a .zip).")
    prep.add_argument("--download", action="store_true", default=None,
                      help="fashion_mnist, cifar10: download the upstream files into --root first "
                           "(needs internet; MD5-checked). Default: never download.")
    prep.add_argument("--ood", metavar="NAME", default=None,
                      help="name of the out-of-distribution partner dataset (same channel count), or 'none'. "
                           "Default: the dataset's.")
    add_verbosity_flags(prep)
    prep.set_defaults(func=run_prepare)

    meas = sub.add_parser("measure", help="build a measurement store", description=MEASURE_DESCRIPTION,
                          formatter_class=HelpFormatter,
                          epilog="example:\n  lemmse data measure --data results/data/digits.zarr --task inpainting "
                                 "--sigma 0.01 0.05 0.2 --n-eval 64 \\\n      --out results/measurements/digits/inpainting.zarr\n")
    meas.add_argument("--data", required=True, type=Path, metavar="DATA.zarr", help="required. A prepared dataset store.")
    meas.add_argument("--task", required=True, choices=TASKS, help="required. The forward operator A.")
    meas.add_argument("--sigma", required=True, type=float, nargs="+", metavar="S",
                      help="required. Noise levels σ > 0 (distinct), in image-value units.")
    meas.add_argument("--n-eval", required=True, type=positive_int, metavar="N",
                      help="required. Measure the first N images of each split.")
    meas.add_argument("--out", required=True, type=Path, metavar="PATH.zarr",
                      help="required. The store to write; replaced only on success.")
    meas.add_argument("--hole", type=int, metavar="S", default=None,
                      help="inpainting only: side of the centred square hole. Default: min(H, W)//2 - 1.")
    meas.add_argument("--blur-std", type=float, metavar="S", default=None,
                      help="deconvolution only: std in pixels of the Gaussian blur. Default: 1.0.")
    meas.add_argument("--seed", type=int, metavar="N", default=0, help="base seed of the noise. Default: 0.")
    meas.add_argument("--image-chunk", type=positive_int, metavar="N", default=64,
                      help="images per Zarr chunk (the unit of parallel region writes). Default: 64.")
    add_verbosity_flags(meas)
    meas.set_defaults(func=run_measure)

    info = sub.add_parser("info", help="print shapes, split sizes and provenance of a store",
                          description="Describe a dataset or measurement store.", formatter_class=HelpFormatter)
    info.add_argument("path", type=Path, metavar="PATH.zarr")
    add_verbosity_flags(info)
    info.set_defaults(func=run_info)
    return p


def _read_config(path: Path | None) -> dict:
    if path is None:
        return {}
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except OSError as err:
        raise CliError(f"--config {path}: cannot read ({err.strerror or err})") from err
    except yaml.YAMLError as err:
        raise CliError(f"--config {path}: not valid YAML ({err})") from err
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise CliError(f"--config {path}: expected a mapping of config keys, found {type(config).__name__}")
    return config


def run_prepare(args: argparse.Namespace) -> int:
    from lemmse.data import prepare_dataset

    config = _read_config(args.config)
    flags = {"resolution": args.resolution, "train_size": args.train_size, "test_size": args.test_size,
             "test_start": args.test_start, "grayscale": args.grayscale, "root": args.root,
             "download": args.download, "ood": args.ood}
    config.update({k: v for k, v in flags.items() if v is not None})
    prepare_dataset(args.dataset, args.out, **config)
    return 0


def run_measure(args: argparse.Namespace) -> int:
    from lemmse.data import build_measurements

    build_measurements(args.out, args.data, task=args.task, sigmas=args.sigma, n_eval=args.n_eval,
                              hole=args.hole, blur_std=args.blur_std, seed=args.seed,
                              image_chunk=args.image_chunk, progress=sys.stderr.isatty() and not args.quiet)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from lemmse.errors import LemmseInputError
    from lemmse.store import is_complete, open_dataset

    if not args.path.exists():
        raise CliError(f"{args.path}: no such store")
    try:
        ds = open_dataset(args.path, complete=False)
    except (LemmseInputError, OSError, ValueError, KeyError) as err:
        raise CliError(f"{args.path}: not a readable Zarr store ({err})") from err
    lines = [f"store: {args.path}", f"complete: {'yes' if is_complete(args.path) else 'NO (still being written or failed)'}"]
    attrs = dict(ds.attrs)
    if {"train", "test"} <= set(ds.data_vars):
        lines += [f"dataset: {attrs.get('dataset')}",
                  f"train: {ds['train'].dims} {tuple(ds['train'].shape)} {ds['train'].dtype}",
                  f"test: {ds['test'].dims} {tuple(ds['test'].shape)} {ds['test'].dtype}",
                  f"split sizes: train {ds.sizes['train_image']}, test {ds.sizes['test_image']}"]
        keys = ("resolution", "channels", "source", "licence", "url", "preprocessing", "split", "ood_partner", "sha256")
    elif "y" in ds.data_vars:
        lines += [f"measurements of: {attrs.get('dataset')} ({attrs.get('data_store')})",
                  f"y: {ds['y'].dims} {tuple(ds['y'].shape)} {ds['y'].dtype}",
                  "split sizes: " + ", ".join(f"{s} {ds.sizes['image']}" for s in ds["split"].values.tolist()),
                  f"sigma: {', '.join(f'{s:g}' for s in ds['sigma'].values.tolist())}"]
        keys = ("task", "hole", "blur_std", "n_eval", "seed", "data_store_relative", "data_sha256", "x_lookup", "noise_recipe")
    else:
        lines += [f"{name}: {var.dims} {tuple(var.shape)} {var.dtype}" for name, var in ds.data_vars.items()]
        keys = tuple(k for k in attrs if k != "complete")
    lines += [f"{k}: {attrs[k]}" for k in keys if k in attrs]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
