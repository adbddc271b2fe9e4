"""Shift-aware distance to the training set against a float64 brute force over every circular shift."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from lemmse.errors import LemmseInputError
from lemmse.memorisation import shift_nearest, shift_nearest_distance


def brute(images: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = images[0].size
    shifted, plain = [], []
    for a in images:
        best = np.inf
        for t in train:
            for gy in range(a.shape[1]):
                for gx in range(a.shape[2]):
                    best = min(best, float(((a - np.roll(t, (gy, gx), axis=(1, 2))) ** 2).sum()))
        shifted.append(np.sqrt(best / size))
        plain.append(np.sqrt(min(float(((a - t) ** 2).sum()) for t in train) / size))
    return np.array(shifted), np.array(plain)


@hsettings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 3), d=st.integers(1, 5), c=st.integers(1, 2),
       h=st.integers(1, 5), w=st.integers(1, 6), block=st.integers(1, 4), cache=st.booleans())
def test_matches_brute_force(seed, n, d, c, h, w, block, cache):
    rng = np.random.default_rng(seed)
    images, train = rng.random((n, c, h, w)), rng.random((d, c, h, w))
    shifted, plain = shift_nearest_distance(images, train, block=block, cache_bytes=2**30 if cache else 0)
    ref_s, ref_p = brute(images, train)
    np.testing.assert_allclose(shifted, ref_s, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(plain, ref_p, rtol=1e-12, atol=1e-14)
    # the returned training image and shift reach the distance (what Fig. 3 draws)
    near = shift_nearest(images, train, block=block)
    for i, a in enumerate(images):
        nearest = np.roll(train[near["index"][i]], (near["shift_h"][i], near["shift_w"][i]), axis=(1, 2))
        assert np.sqrt(((a - nearest) ** 2).mean()) == pytest.approx(ref_s[i], rel=1e-12, abs=1e-14)


def test_a_shifted_training_image_is_memorised():
    rng = np.random.default_rng(0)
    train = rng.random((4, 1, 8, 8))
    image = np.roll(train[2], (3, -2), axis=(1, 2))[None]
    shifted, plain = shift_nearest_distance(image, train)
    assert shifted[0] == 0.0 and plain[0] > 0.1
    near = shift_nearest(image, train)
    assert (near["index"][0], near["shift_h"][0], near["shift_w"][0]) == (2, 3, 6)  # -2 ≡ 6 (mod 8)


def test_bad_shapes_are_refused():
    with pytest.raises(LemmseInputError, match="one shape"):
        shift_nearest_distance(np.zeros((1, 1, 4, 4)), np.zeros((2, 1, 4, 5)))
    with pytest.raises(LemmseInputError, match="empty"):
        shift_nearest_distance(np.zeros((1, 1, 4, 4)), np.zeros((0, 1, 4, 4)))
