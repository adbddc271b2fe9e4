"""Demonstration: MMSE, E-MMSE and LE-MMSE on scikit-learn's bundled handwritten digits.

The digits (8×8, levels 0..16) are scaled to [0, 1] and upsampled 2× bilinearly to 16×16 (the
convention of ``shared/bench``). The first ``--train-size`` images are the training set; test
images are taken from index 1500 on. For every task, pre-inverse and noise level the script
measures ``y = A x + σ·noise`` (one seeded noise draw shared by all of them), computes the three
estimators and logs the mean PSNR against the truth; the table is written to
``<out-dir>/psnr.csv``. Runs in about a minute on two CPU cores.

    python scripts/demo_estimators.py --help
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from lemmse.estimators import estimate
from lemmse.operators import make_problem

log = logging.getLogger("demo_estimators")

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_START = 1500
SIGMAS = (0.05, 0.2)
ESTIMATORS = ("mmse", "emmse", "lemmse")
#: (task, pre-inverse, operator keyword arguments)
PROBLEMS = (
    ("denoising", "identity", {}),
    ("inpainting", "identity", {"hole": 7}),
    ("inpainting", "pinv", {"hole": 7}),
    ("deconvolution", "identity", {"blur_std": 1.0}),
    ("deconvolution", "pinv", {"blur_std": 1.0}),
)


def load_digits16() -> torch.Tensor:
    """All 1797 digits as float32 ``(1797, 1, 16, 16)`` in [0, 1]."""
    images = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    return F.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)


def psnr(estimate_: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over images of ``10·log10(1 / MSE)`` (peak 1), in dB."""
    mse = ((estimate_.double() - truth.double()) ** 2).flatten(1).mean(dim=1)
    return float((10 * torch.log10(1.0 / mse)).mean())


def run(train_size: int, test_size: int, patch: int, seed: int) -> pd.DataFrame:
    """One row per (task, pre-inverse, σ, estimator): mean PSNR and seconds; ``y`` rows hold the measurement's."""
    digits = load_digits16()
    if not 0 < train_size <= TEST_START:
        raise SystemExit(f"--train-size must be in [1, {TEST_START}], got {train_size}")
    if not 0 < test_size <= len(digits) - TEST_START:
        raise SystemExit(f"--test-size must be in [1, {len(digits) - TEST_START}], got {test_size}")
    train, truth = digits[:train_size], digits[TEST_START : TEST_START + test_size]
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(seed))
    log.info("digits16: %d training images, %d test images (from index %d), P=%d",
             train_size, test_size, TEST_START, patch)
    rows = []
    for task, preinverse, kwargs in PROBLEMS:
        problem = make_problem(task, (16, 16), **kwargs)
        for sigma in SIGMAS:
            y = problem.measure(truth, sigma, noise)
            rows.append(dict(task=task, preinverse=preinverse, sigma=sigma, estimator="y",
                             psnr_db=psnr(y, truth), seconds=0.0))
            for name in ESTIMATORS:
                start = time.perf_counter()
                result = estimate(train, y, task=task, estimator=name, sigma=sigma, preinverse=preinverse,
                                  patch=patch if name == "lemmse" else None, **kwargs)
                seconds = time.perf_counter() - start
                rows.append(dict(task=task, preinverse=preinverse, sigma=sigma, estimator=name,
                                 psnr_db=psnr(result.xhat, truth), seconds=seconds))
                log.info("%-13s B=%-8s sigma=%.2f %-6s PSNR %6.2f dB  (%.2f s)",
                         task, preinverse, sigma, name, rows[-1]["psnr_db"], seconds)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train-size", type=int, default=500, help="training images (the first ones)")
    parser.add_argument("--test-size", type=int, default=8, help="test images, from index 1500 on")
    parser.add_argument("--patch", type=int, default=5, help="LE-MMSE patch size P (odd)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "results" / "demo",
                        help="folder for psnr.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the measurement noise")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    table = run(args.train_size, args.test_size, args.patch, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "psnr.csv"
    table.to_csv(out, index=False)

    wide = table.pivot_table(index=["task", "preinverse", "sigma"], columns="estimator", values="psnr_db",
                             sort=False)[["y", *ESTIMATORS]]
    log.info("Mean PSNR against the truth (dB); 'y' is the measurement itself:\n%s",
             wide.to_string(float_format=lambda v: f"{v:6.2f}"))
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
