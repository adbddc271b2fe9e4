r"""Image metrics shared by the producers (estimator shards, network evaluation) and their readers.

PSNR with a peak of 1 (images in [0, 1])::

    PSNR(a, b) = 10 log10(1 / mean((a − b)²))     over the last three axes (c, h, w), in float64

Identical images give ``+inf``.
"""
from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``10 log10(1 / mean((a - b)²))`` over the last three axes (peak 1: images in [0, 1]), float64."""
    mse = ((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2).mean(axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)
