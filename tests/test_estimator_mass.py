"""The one-pass 99 %-mass counter against the sorted cumulative sum (float64), and the source maps
of the streaming accumulator against a direct computation.

For random logits streamed in blocks: the reported count ``k_hi`` reaches the fraction (it is an
upper bound), the exact count ``k*`` lies in ``[k_lo, k_hi]``, and ``k_hi - k*`` is below the
documented ``1 + (e^δ - 1)·n`` with ``n`` the keys within ``δ`` of the crossing key.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lemmse.estimators.accumulator import StreamingSoftmax
from lemmse.estimators.mass import MassCounter


def exact_counts(logits: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``k*`` per row from the sorted cumulative sum, and the sorted log-weights ``(Q, K)``."""
    logw = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    ordered = -np.sort(-logw, axis=1)
    cum = np.cumsum(np.exp(ordered), axis=1)
    k = np.array([min(int(np.searchsorted(c, fraction)) + 1, c.size) for c in cum])
    return k, ordered


def stream_counts(logits: np.ndarray, block: int, fraction: float, bins: int):
    t = torch.from_numpy(logits)
    log_z = torch.logsumexp(t, dim=1)
    counter = MassCounter(t.amax(dim=1), log_z, t.shape[1], fraction, bins)
    for start in range(0, t.shape[1], block):
        counter.update(slice(0, t.shape[0]), t[:, start : start + block].clone())
    k_lo, k_hi = counter.bounds()
    return k_lo.numpy(), k_hi.numpy(), counter.width.numpy()


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), n_keys=st.integers(1, 3000), scale=st.sampled_from([0.01, 1.0, 10.0, 300.0]),
       block=st.integers(1, 700), ties=st.booleans(), bins=st.sampled_from([16, 256, 2048]))
def test_mass_counter_brackets_the_exact_count(seed, n_keys, scale, block, ties, bins):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((5, n_keys)) * scale + rng.standard_normal((5, 1)) * 1e4
    if ties:  # many exactly equal logits (the rank-0 strata are all ties)
        logits = np.round(logits / max(scale, 1e-12)) * scale
    fraction = 0.99
    exact, ordered = exact_counts(logits, fraction)
    k_lo, k_hi, width = stream_counts(logits, block, fraction, bins)
    assert (k_lo <= exact).all() and (exact <= k_hi).all(), (k_lo, exact, k_hi)
    for r in range(logits.shape[0]):
        crossing = ordered[r, exact[r] - 1]
        near = int(np.sum(np.abs(ordered[r] - crossing) <= width[r] * (1 + 1e-9)))
        assert k_hi[r] - exact[r] < 1 + math.expm1(width[r]) * near
        # the reported count's largest weights do hold the fraction
        assert np.exp(ordered[r, : k_hi[r]]).sum() >= fraction * (1 - 1e-12)


def test_mass_counter_is_exact_when_the_crossing_bin_holds_one_key():
    logits = np.log(np.array([[0.6, 0.3, 0.095, 0.005], [0.25, 0.25, 0.25, 0.25]]))
    k_lo, k_hi, _ = stream_counts(logits, 2, 0.99, 2048)
    assert k_hi.tolist() == [3, 4] and k_lo.tolist() == [3, 4]
    all_equal = np.zeros((1, 1000))  # a fully hidden pixel: D·S₀ equal weights → ⌈0.99·1000⌉
    assert stream_counts(all_equal, 300, 0.99, 2048)[1].tolist() == [990]


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), images=st.integers(1, 12), group=st.integers(1, 9),
       scale=st.sampled_from([0.3, 3.0, 30.0]), per_block=st.integers(1, 5))
def test_source_maps_match_a_direct_computation(seed, images, group, scale, per_block):
    """key_owner: image of the single largest weight if ≥ 0.5; image_owner: image whose keys sum to ≥ 0.5."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((7, images * group)) * scale
    w = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    top = w.argmax(axis=1)
    key_ref = np.where(w.max(axis=1) >= 0.5, top // group, -1)
    share = w.reshape(7, images, group).sum(axis=2)
    image_ref = np.where(share.max(axis=1) >= 0.5, share.argmax(axis=1), -1)
    acc = StreamingSoftmax(7, 1, dtype=torch.float64, track_owner=True)
    values = torch.ones(images * group, 2, dtype=torch.float64)
    t = torch.from_numpy(logits)
    for first in range(0, images, per_block):
        cols = slice(first * group, min(first + per_block, images) * group)
        acc.update(slice(0, 7), t[:, cols].contiguous(), values[cols], first_owner=first, group=group)
    clear_key = np.abs(w.max(axis=1) - 0.5) > 1e-9
    clear_image = np.abs(share.max(axis=1) - 0.5) > 1e-9
    assert (acc.key_owner(0.5).numpy() == key_ref)[clear_key].all()
    assert (acc.image_owner(0.5).numpy() == image_ref)[clear_image].all()
    # the single-patch map is the stricter one: where it names an image, the image map names the same one
    named = acc.key_owner(0.5).numpy() >= 0
    assert (acc.image_owner(0.5).numpy()[named] == acc.key_owner(0.5).numpy()[named]).all()
