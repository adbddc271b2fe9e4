"""The 99 %-mass histogram on real images against an independent float64 brute force.

Digits (16×16, the benchmark's first training images), LE-MMSE denoising with B = I, P = 5: the
brute force forms every query patch and training patch with ``np.roll``, the logits
``-‖q - k‖²/2σ²`` as squared differences in float64, sorts each query's weights and takes the
smallest ``k*`` whose largest weights reach 0.99. At small σ (nearly every key far below the
maximum) and large σ (nearly every key in the window):

* the package's ``mass99`` (the reported ``k_hi``) lies within the stated bound of
  :mod:`lemmse.estimators.mass`: ``k* <= k_hi < k* + 1 + (e^δ - 1)·n``;
* the same brute-force logits streamed through the accumulator in blocks of whole images give
  ``k_lo <= k* <= k_hi``, and ``k_hi = k*`` wherever ``k_lo = k_hi`` (the bound says exact).

``k*`` is taken at the fraction ∓ 1e-12 (float64 weights) or ∓ 1e-5 (float32 weights and
normaliser), the rounding the module docstring states.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lemmse.estimators import estimate
from lemmse.estimators.accumulator import StreamingSoftmax
from lemmse.estimators.mass import MassHistogram
from bruteforce import count_at, mass_counts, top_mass

TRAIN = 40
PATCH = 5
FRACTION = 0.99
TEST_START = 1500
SIGMAS = (0.01, 0.05, 0.2, 0.8)


def patches(images: np.ndarray, patch: int) -> np.ndarray:
    """``(n, H·W, P²)`` circular patches centred at every pixel of ``images`` ``(n, H, W)`` (float64)."""
    r = patch // 2
    shifted = [np.roll(images, (-a, -b), axis=(1, 2)) for a in range(-r, r + 1) for b in range(-r, r + 1)]
    return np.stack(shifted, axis=-1).reshape(images.shape[0], -1, patch * patch)


def brute_logits(train: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """``(H·W, D·H·W)`` logits ``-‖q - k‖²/2σ²``, keys image after image (float64 differences)."""
    q = patches(y[None], PATCH)[0]
    k = patches(train, PATCH).reshape(-1, PATCH * PATCH)
    d2 = np.concatenate([((q[i : i + 16, None, :] - k[None, :, :]) ** 2).sum(axis=2) for i in range(0, len(q), 16)])
    return -0.5 * d2 / sigma**2


def assert_within_bound(counts: np.ndarray, sorted_mass: tuple[np.ndarray, np.ndarray], delta: float, tolerance: float,
                        what: str) -> None:
    """``sorted_mass``: :func:`bruteforce.top_mass` of the brute-force logits (one sort for every check)."""
    ordered, cumulative = sorted_mass
    low, high = count_at(cumulative, FRACTION - tolerance), count_at(cumulative, FRACTION + tolerance)
    for r in np.flatnonzero((counts < low) | (counts > high)):
        crossing = ordered[r, high[r] - 1]
        near = int(np.sum(np.abs(ordered[r] - crossing) <= delta * (1 + 1e-9) + tolerance))
        assert low[r] <= counts[r] < high[r] + 1 + math.expm1(delta) * near, (
            f"{what}: query {r} count {counts[r]}, brute force [{low[r]}, {high[r]}], {near} keys within δ")


@pytest.fixture(scope="module")
def data(digits16, test_noise):
    return digits16[:, 0].numpy().astype(np.float64), test_noise[:, 0].numpy().astype(np.float64)


@settings(max_examples=8)
@given(image=st.integers(0, 200), sigma=st.sampled_from(SIGMAS), dtype=st.sampled_from([torch.float32, torch.float64]),
       noise=st.integers(0, 7))
def test_mass_counts_of_real_images_against_brute_force(data, image, sigma, dtype, noise):
    digits, draws = data
    train = digits[:TRAIN]
    y = (digits[TEST_START + image] + sigma * draws[noise]).astype(np.float32).astype(np.float64)
    logits = brute_logits(train, y, sigma)
    sorted_mass = top_mass(logits)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    n_keys = logits.shape[1]

    # the public estimator (its own fast logits): the reported count within the stated bound
    res = estimate(torch.from_numpy(train[:, None]).to(dtype), torch.from_numpy(y[None, None]).to(dtype),
                   task="denoising", estimator="lemmse", sigma=sigma, patch=PATCH, dtype=dtype, diagnostics=True)
    delta = MassHistogram(1, n_keys).delta
    mass99 = res.diagnostics["mass99"].reshape(-1).numpy()
    assert_within_bound(mass99, sorted_mass, delta, tolerance, f"σ={sigma} package")

    # the brute-force logits streamed in blocks of whole images: k_lo <= k* <= k_hi, exact where k_lo = k_hi
    acc = StreamingSoftmax(logits.shape[0], 1, dtype=dtype,
                           mass=MassHistogram(logits.shape[0], n_keys, fraction=FRACTION, dtype=dtype))
    values = torch.ones(n_keys, 2, dtype=dtype)
    group = y.size
    for start in range(0, n_keys, 7 * group):
        cols = slice(start, start + 7 * group)
        acc.update(slice(0, logits.shape[0]), torch.from_numpy(logits[:, cols]).contiguous(), values[cols],
                   first_owner=start // group, group=group)
    k_lo, k_hi = (b.numpy() for b in acc.mass_bounds())
    low, high = count_at(sorted_mass[1], FRACTION - tolerance), count_at(sorted_mass[1], FRACTION + tolerance)
    assert (k_lo <= high).all() and (low <= k_hi).all()
    sure = k_lo == k_hi
    assert ((low <= k_hi) & (k_hi <= high))[sure].all(), f"σ={sigma}: the bound says exact but the count is not"
    assert_within_bound(k_hi, sorted_mass, acc.mass.delta, tolerance, f"σ={sigma} streamed")


def test_the_real_image_cases_are_not_trivial(data):
    """Small σ: a few keys carry the mass; large σ: thousands, and the crossing bin holds several keys."""
    digits, draws = data
    y = digits[TEST_START] + 0.01 * draws[0]
    sharp, _ = mass_counts(brute_logits(digits[:TRAIN], y, 0.01), FRACTION)
    y = digits[TEST_START] + 0.8 * draws[0]
    spread, _ = mass_counts(brute_logits(digits[:TRAIN], y, 0.8), FRACTION)
    assert np.median(sharp) <= 10 and np.median(spread) >= 1000
