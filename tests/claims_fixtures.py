"""Tables for the claims tests, built so that each claim's statistic is known by construction.

Every cell holds ``IMAGES`` images whose values are ``level + OFFSETS[image]``: the offsets sum
to zero, so a cell's mean is exactly ``level`` while the bootstrap has something to resample.
Columns follow lemmse.tables with the paper-convention density and observed-pixel mass names.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
import pandas as pd

from lemmse.claims import Settings, compute_claims

OFFSETS = (-1.0, -0.5, 0.5, 1.0)
IMAGES = len(OFFSETS)
SIGMAS = (0.01, 0.1, 1.0)
SETTINGS = Settings(reps=20, seed=3)

METRICS_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "arch", "patch", "train_size", "train_sigma",
                "estimator", "smoothing", "sigma", "split", "image")
METRICS_VALUES = ("psnr_net_truth", "psnr_est_truth", "psnr_net_est", "psnr_input_est",
                  "neg_log_density_image_paper", "neg_log_density_patch_paper", "neg_log_density_image_normalised",
                  "neg_log_density_patch_normalised", "mass99_observed_mean", "mass99_observed_median")
ANALYTIC_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "estimator", "smoothing", "patch", "train_size",
                 "sigma", "split", "image")
ANALYTIC_VALUES = ("psnr_est_truth", "nearest_train_distance", "truth_nearest_train_distance",
                   "neg_log_density_image_paper", "neg_log_density_patch_paper", "neg_log_density_image_normalised",
                   "neg_log_density_patch_normalised", "mass99_observed_mean", "mass99_observed_median",
                   "distinct_sources")
NETPAIR_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "patch", "train_size", "train_sigma", "arch_a",
                "arch_b", "sigma", "split", "image")
ESTPAIR_KEYS = ("dataset", "eval_dataset", "task", "estimator", "patch", "train_size", "preinverse_a",
                "preinverse_b", "sigma", "split", "image")
MEMO_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "estimator", "patch", "train_size", "sigma", "split",
             "image")

BASE = dict(dataset="d", eval_dataset="d", task="denoising", preinverse="identity", arch="unet", patch=5,
            train_size=10, train_sigma="0-1", estimator="lemmse", smoothing=0.0, split="test", arch_a="resnet", arch_b="unet",
            preinverse_a="identity", preinverse_b="pinv")


def table(keys: tuple[str, ...], values: tuple[str, ...], fill: Callable[..., dict[str, float]], *,
          jitter: tuple[str, ...] = (), **axes: Any) -> pd.DataFrame:
    """One row per combination of ``axes`` (others fixed at ``BASE``; σ over ``SIGMAS``) and image.

    ``fill(**row)`` gives the cell's values; columns named in ``jitter`` get ``+ OFFSETS[image]``.
    """
    axes = {"sigma": SIGMAS, **axes}
    names = [k for k in keys if k != "image"]
    grid = [axes.get(k, (BASE.get(k),)) for k in names]
    rows = []
    for combo in itertools.product(*grid):
        row = dict(zip(names, combo))
        cell = fill(**row)
        for image, off in enumerate(OFFSETS):
            r = {**row, "image": image, **{v: np.nan for v in values}, **cell}
            for c in jitter:
                r[c] = r[c] + off
            rows.append(r)
    return pd.DataFrame(rows, columns=[*keys, *values])


def metrics(fill, **axes) -> pd.DataFrame:
    return table(METRICS_KEYS, METRICS_VALUES, fill, jitter=("psnr_net_est",), **axes)


def analytic(fill, jitter=("psnr_est_truth",), **axes) -> pd.DataFrame:
    return table(ANALYTIC_KEYS, ANALYTIC_VALUES, fill, jitter=jitter, **axes)


def netpairs(fill, **axes) -> pd.DataFrame:
    return table(NETPAIR_KEYS, ("psnr",), fill, jitter=("psnr",), **axes)


def estimator_pairs(fill, **axes) -> pd.DataFrame:
    return table(ESTPAIR_KEYS, ("psnr",), fill, jitter=("psnr",), **axes)


def memorisation(fill, **axes) -> pd.DataFrame:
    return table(MEMO_KEYS, ("distance", "distance_unshifted", "truth_distance"), fill, **axes)


EMPTY_M = metrics(lambda **k: {}).iloc[:0]
EMPTY_A = analytic(lambda **k: {}).iloc[:0]


def run(claim: str, metrics_table: pd.DataFrame = EMPTY_M, analytic_table: pd.DataFrame = EMPTY_A,
        **kwargs: Any) -> pd.Series:
    """The claims-table row of ``claim``."""
    kwargs.setdefault("settings", SETTINGS)
    out = compute_claims(metrics_table, analytic_table, only=[claim], **kwargs)
    return out.set_index("id").loc[claim]
