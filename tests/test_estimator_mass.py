"""The 99 %-mass histogram folded into the streaming accumulator against the sorted cumulative sum
(float64), and the source maps of the accumulator against a direct computation.

For random logits streamed in blocks (the running maximum jumps, so the histogram's anchor moves
and its rows shift): the reported count ``k_hi`` reaches the fraction (it is an upper bound), the
exact count ``k*`` lies in ``[k_lo, k_hi]``, and ``k_hi - k*`` is below the documented
``1 + (e^δ - 1)·n`` with ``n`` the keys within ``δ`` of the crossing key.
"""
from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lemmse.estimators.accumulator import StreamingSoftmax
from lemmse.estimators import mass as mass_module
from lemmse.estimators.mass import MassHistogram, bin_width, window_width
from bruteforce import mass_counts


def stream_counts(logits: np.ndarray, block: int, fraction: float, dtype=torch.float64, group: int = 1,
                  live_fraction: float | None = None):
    """``(k_lo, k_hi)`` of the histogram of an accumulator fed ``logits`` in blocks of ``block`` images
    of ``group`` keys (``live_fraction``: force the gathered (2.0) or the dense (0.0) path)."""
    t = torch.from_numpy(logits)
    acc = StreamingSoftmax(t.shape[0], 1, dtype=dtype, mass=MassHistogram(t.shape[0], t.shape[1], fraction=fraction,
                                                                          dtype=dtype))
    values = torch.ones(t.shape[1], 2, dtype=dtype)
    step = block * group
    with mock.patch.object(mass_module, "LIVE_FRACTION", mass_module.LIVE_FRACTION if live_fraction is None
                           else live_fraction):
        for start in range(0, t.shape[1], step):
            cols = slice(start, start + step)
            acc.update(slice(0, t.shape[0]), t[:, cols].contiguous(), values[cols], first_owner=start // group,
                       group=group)
    k_lo, k_hi = acc.mass_bounds()
    return k_lo.numpy(), k_hi.numpy(), acc.mass.delta


def check_bounds(logits: np.ndarray, fraction: float, k_lo: np.ndarray, k_hi: np.ndarray, delta: float,
                 tolerance: float = 1e-12):
    """``k_lo <= k* <= k_hi`` and ``k_hi - k* < 1 + (e^δ - 1)·n`` (``n``: keys within δ of the crossing key),
    ``k*`` from the sorted cumulative sum at the fraction ∓ ``tolerance`` (the weights' rounding)."""
    low, _ = mass_counts(logits, fraction - tolerance)
    high, ordered = mass_counts(logits, fraction + tolerance)
    assert (k_lo <= high).all() and (low <= k_hi).all(), (k_lo, low, high, k_hi)
    for r in range(logits.shape[0]):
        crossing = ordered[r, high[r] - 1]
        near = int(np.sum(np.abs(ordered[r] - crossing) <= delta * (1 + 1e-9) + tolerance))
        assert k_hi[r] - high[r] < 1 + math.expm1(delta) * near
        # the reported count's largest weights do hold the fraction
        assert np.exp(ordered[r, : k_hi[r]]).sum() >= fraction * (1 - 1e-12) - tolerance


@settings(max_examples=60)
@given(seed=st.integers(0, 2**31 - 1), images=st.integers(1, 60), group=st.sampled_from([1, 8, 50]),
       scale=st.sampled_from([0.01, 1.0, 10.0, 300.0]), block=st.integers(1, 12), ties=st.booleans(),
       path=st.sampled_from([None, 0.0, 2.0]))
def test_mass_histogram_brackets_the_exact_count(seed, images, group, scale, block, ties, path):
    """float64 weights: the bound around the sorted cumulative sum, on the dense and the gathered path."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((5, images * group)) * scale + rng.standard_normal((5, 1)) * 1e4
    if ties:  # many exactly equal logits (the rank-0 strata are all ties)
        logits = np.round(logits / max(scale, 1e-12)) * scale
    k_lo, k_hi, delta = stream_counts(logits, block, 0.99, torch.float64, group, path)
    check_bounds(logits, 0.99, k_lo, k_hi, delta)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), images=st.integers(1, 60), group=st.sampled_from([1, 8, 50]),
       scale=st.sampled_from([1.0, 10.0, 300.0]), block=st.integers(1, 12), path=st.sampled_from([None, 0.0, 2.0]))
def test_mass_histogram_float32_brackets_the_exact_count(seed, images, group, scale, block, path):
    """float32 weights (packed integer sums): the same bound at the fraction ∓ 1e-5 (float32 weights and Z)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((5, images * group)) * scale + rng.standard_normal((5, 1)) * 1e3
    k_lo, k_hi, delta = stream_counts(logits, block, 0.99, torch.float32, group, path)
    check_bounds(logits, 0.99, k_lo, k_hi, delta, tolerance=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), small=st.integers(200, 3000), big=st.integers(1, 20),
       tail=st.floats(0.0101, 0.05), group=st.sampled_from([1, 8, 50]), block=st.integers(1, 12),
       order=st.sampled_from(["big first", "small first", "shuffled"]), dtype=st.sampled_from([torch.float64, torch.float32]),
       path=st.sampled_from([None, 0.0, 2.0]))
# 974 one-key blocks of near-equal weight: a float32 running normaliser erred by ~1e-5 (one rounding
# per block, all alike) and k_lo overshot the exact count by one key
@example(seed=0, small=973, big=1, tail=1 / 64, group=1, block=1, order="big first", dtype=torch.float32, path=None)
def test_mass_histogram_cut_at_the_running_normaliser_keeps_every_key_that_counts(seed, small, big, tail, group, block,
                                                                                   order, dtype, path):
    """The cut at the running ``log Z - W`` (``log Z ≫ m``: many near-equal keys) against the sorted cumulative
    sum: a tail of ``small`` equal keys holding ``tail`` > 1 - f of the weight, each just above ``e^{-W}``
    (down to ``1.02 (1 - f) e^{-LO_MARGIN} / K``), so the crossing lies among them and a cut any tighter
    than ``log Z - W`` (e.g. ``log Z - W + 0.02``) would drop keys the count needs."""
    rng = np.random.default_rng(seed)
    n_keys = -(-(small + big) // group) * group
    small = n_keys - big
    weights = np.concatenate([np.full(big, (1.0 - tail) / big), np.full(small, tail / small)])
    logits = np.log(weights) + rng.uniform(-1e-3, 1e-3, (3, n_keys)) + rng.standard_normal((3, 1)) * 100
    if order == "small first":
        logits = logits[:, ::-1]
    elif order == "shuffled":
        logits = logits[:, rng.permutation(n_keys)]
    logits = np.ascontiguousarray(logits)
    k_lo, k_hi, delta = stream_counts(logits, block, 0.99, dtype, group, path)
    check_bounds(logits, 0.99, k_lo, k_hi, delta, tolerance=1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("block", [1, 7])
def test_float32_normaliser_does_not_drift_over_many_blocks(block):
    """One key of weight ~1 then 20 000 keys of ~1e-5, in blocks of ``block`` keys: a float32 running sum
    rounds each block's ~1e-5 against ~1 alike (up to 6e-8 each, ~1e-3 in all); carried in float64 the
    normaliser keeps only the weights' own float32 rounding."""
    logits = np.concatenate([[0.0], np.full(20_000, math.log(1e-5))])[None, :] + 50.0
    exact = np.logaddexp.reduce(logits[0])
    t = torch.from_numpy(logits)
    acc = StreamingSoftmax(1, 1, dtype=torch.float32)
    values = torch.ones(t.shape[1], 2, dtype=torch.float32)
    for start in range(0, t.shape[1], block):
        acc.update(slice(0, 1), t[:, start:start + block].contiguous(), values[start:start + block])
    assert abs(float(acc.log_normaliser()[0]) - exact) < 1e-6
    assert abs(float(acc.mean()[0, 0]) - 1.0) < 1e-6


def test_mass_histogram_is_exact_when_the_crossing_bin_holds_one_key():
    logits = np.log(np.array([[0.6, 0.3, 0.095, 0.005], [0.25, 0.25, 0.25, 0.25]]))
    k_lo, k_hi, _ = stream_counts(logits, 2, 0.99)
    assert k_hi.tolist() == [3, 4] and k_lo.tolist() == [3, 4]
    all_equal = np.zeros((1, 1000))  # a fully hidden pixel: D·S₀ equal weights → ⌈0.99·1000⌉
    for dtype in (torch.float64, torch.float32):
        assert stream_counts(all_equal, 3, 0.99, dtype, 100)[1].tolist() == [990]


@given(n_keys=st.integers(1, 2**30))
def test_bins_are_never_wider_than_the_former_counters(n_keys):
    """The former two-pass counter's widest bin was W/2048; every bin here is at most that wide."""
    assert bin_width(n_keys) <= window_width(n_keys, 0.99) / 2048
    assert bin_width(n_keys) <= 0.0079  # ≈ 0.0039 below ~70 000 keys, ≈ 0.0078 above


def test_mass_histogram_follows_a_maximum_that_keeps_rising():
    """Blocks in increasing order: the anchor moves at (nearly) every block, rows shift, nothing is lost."""
    rng = np.random.default_rng(3)
    logits = np.sort(rng.standard_normal((4, 4000)) * 4.0, axis=1)
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        for block in (1, 7, 40):
            k_lo, k_hi, delta = stream_counts(logits, block, 0.99, dtype, 10)
            check_bounds(logits, 0.99, k_lo, k_hi, delta, tolerance)


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


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), keys=st.sampled_from([5, 63, 64, 300, 2000, 9000]),
       scale=st.sampled_from([0.3, 3.0, 30.0]), tiles=st.integers(1, 4))
def test_fused_binning_kernel_is_bit_identical_to_the_pytorch_path(seed, keys, scale, tiles):
    """float32 weights on CPU: lemmse.estimators.binning (one numba pass) and the PyTorch passes fill the
    same int64 sums, for row runs not starting at 0, few and many keys per row, a moving anchor."""
    from lemmse.estimators import binning

    assert binning.ENABLED  # numba is a dependency: the fast path must be the one tested here
    rng = np.random.default_rng(seed)
    n_queries, rows = 24, slice(8, 20)
    tiles_ = [torch.from_numpy(rng.standard_normal((12, keys)) * scale + t * scale).float() for t in range(tiles)]
    sums, anchors = [], []
    for enabled in (True, False):
        hist = MassHistogram(n_queries, keys * tiles, dtype=torch.float32)
        running = torch.full((12,), -math.inf, dtype=torch.float64)
        with mock.patch.object(binning, "ENABLED", enabled):
            for logits in tiles_:
                running = torch.maximum(running, logits.double().amax(dim=1))
                weights = torch.exp(logits.double() - running[:, None]).float()
                hist.update(rows, weights, running)
        sums.append(hist.sums[:, mass_module.UNDERFLOW:].clone())  # the underflow columns are never read
        anchors.append(hist.anchor.clone())
    assert torch.equal(sums[0], sums[1]) and torch.equal(anchors[0], anchors[1])
    assert int(sums[0][rows].count_nonzero()) > 0 and int(sums[0][:8].count_nonzero()) == 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), keys=st.sampled_from([5, 63, 300, 2000, 9000]),
       scale=st.sampled_from([0.3, 3.0]), tiles=st.integers(1, 4))
def test_fused_binning_cuts_the_same_keys_as_the_pytorch_path(seed, keys, scale, tiles):
    """With the cut at the running ``log Z - W`` (near-equal keys: ``log Z`` far above the maximum), the
    numba kernel and the PyTorch passes skip the same keys and fill the same window columns; a row of
    many equal keys and a tail ``W - 1`` below them: the cut skips the tail, which the window holds."""
    from lemmse.estimators import binning

    rng = np.random.default_rng(seed)
    n_queries, rows = 24, slice(8, 20)
    tiles_ = [torch.from_numpy(rng.standard_normal((12, keys)) * scale + t * scale).float() for t in range(tiles)]
    tail = window_width(keys * tiles, 0.99) - 1.0
    for logits in tiles_:  # row 0: equal keys and a tail between log Z - W and m - W
        logits[0] = torch.where(torch.arange(keys) % 2 == 0, 0.0, -tail)
    sums = []
    for enabled, cut in ((True, True), (False, True), (True, False)):
        hist = MassHistogram(n_queries, keys * tiles, dtype=torch.float32)
        running = torch.full((12,), -math.inf, dtype=torch.float64)
        log_z = torch.full((12,), -math.inf, dtype=torch.float64)
        with mock.patch.object(binning, "ENABLED", enabled):
            for logits in tiles_:
                running = torch.maximum(running, logits.double().amax(dim=1))
                log_z = torch.logaddexp(log_z, torch.logsumexp(logits.double(), dim=1))
                weights = torch.exp(logits.double() - running[:, None]).float()
                hist.update(rows, weights, running, log_z=log_z if cut else None)
        sums.append(hist.sums[:, mass_module.UNDERFLOW:].clone())
    assert torch.equal(sums[0], sums[1])
    binned = [int((s[rows.start] >> hist.count_bits).sum()) for s in (sums[0], sums[2])]
    half = keys * tiles - keys * tiles // 2
    if keys * tiles >= 300:  # log(K/2) > 1: the tail lies below log Z - W, above the window's bottom
        assert binned == [half, keys * tiles]


def test_fused_binning_refuses_keys_above_the_row_and_rows_outside_the_histogram():
    """The kernel has no bounds checks of its own: its wrapper and counter keep every write in bounds."""

    from lemmse.estimators import binning

    sums = torch.zeros(4, 128, dtype=torch.int64)
    v = torch.full((2, 10), 0.5)
    with pytest.raises(ValueError, match="above their histogram row"):  # base 0: column = bits >> 16 ≫ 128
        binning.bin_rows(sums, 0, v, base=0, low=16, mask=(1 << 23) - 1, one=1 << 30, underflow=64)
    with pytest.raises(ValueError, match="outside the 4 histogram rows"):
        binning.bin_rows(sums, 3, v, base=0, low=16, mask=(1 << 23) - 1, one=1 << 30, underflow=64)
    anchor = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="outside the 4 histogram rows"):
        binning.raise_rows(sums, anchor, 3, torch.zeros(2, dtype=torch.float64), hi_bits=7, n_bins=64, headroom=1.0)
    with pytest.raises(ValueError, match="float64 anchors"):
        binning.raise_rows(sums, anchor.float(), 0, torch.zeros(2, dtype=torch.float64), hi_bits=7, n_bins=64,
                           headroom=1.0)


def test_fused_binning_leaves_pytorchs_thread_count_alone():
    """numba's OpenMP layer would reset the count PyTorch runs with; its own pool (workqueue) does not."""
    from lemmse.estimators import binning

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sums = torch.zeros(64, 128, dtype=torch.int64)
        binning.bin_rows(sums, 0, torch.full((64, 50), 2.0**-40), base=(127 - 60) << 23, low=23, mask=(1 << 23) - 1,
                         one=1 << 30, underflow=64)
        binning.raise_rows(sums, torch.zeros(64, dtype=torch.float64), 0, torch.full((64,), 3.0, dtype=torch.float64),
                           hi_bits=7, n_bins=64, headroom=1.0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


_SIGNATURES = """
import json, sys, torch
from sklearn.datasets import load_digits
from lemmse.estimators import binning, estimate

kernels = ("_bin_rows", "_bin_rows_serial", "_raise_rows", "_raise_rows_serial")
if sys.argv[1] == "compile":
    assert binning.compile_kernels() == list(kernels)
else:  # a real LE-MMSE pass with the 99 %-mass diagnostics, on two threads and on one
    x = torch.from_numpy(load_digits().images[:, None] / 16).float()
    noisy = x[300:304] + 0.1 * torch.randn(x[300:304].shape, generator=torch.Generator().manual_seed(0))
    for threads in (2, 1):
        torch.set_num_threads(threads)
        estimate(x[:300], noisy, task="denoising", estimator="lemmse", patch=3, sigma=0.1, diagnostics=True,
                 mass=True)
print(json.dumps({k: sorted(map(str, getattr(binning, k).signatures)) for k in kernels}))
"""


def test_compiled_kernels_are_the_ones_a_real_mass_pass_runs():
    """compile_kernels (run by scripts/setup_env.sh) compiles every numba kernel for exactly the types a
    real mass pass passes, so a fresh clone's first shard job loads them rather than compiling: each in a
    fresh process, the pass's signatures are among compile_kernels' (and the pass did use the kernels)."""
    import json
    import subprocess
    import sys

    def signatures(mode: str) -> dict[str, list[str]]:
        run = subprocess.run([sys.executable, "-c", _SIGNATURES, mode], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    compiled, used = signatures("compile"), signatures("pass")
    assert all(len(s) == 1 for s in compiled.values()), compiled
    assert used["_bin_rows"] or used["_bin_rows_serial"], used  # the pass ran the numba path
    assert used["_raise_rows"] or used["_raise_rows_serial"], used
    for name, sigs in used.items():
        assert set(sigs) <= set(compiled[name]), (name, sigs, compiled[name])
