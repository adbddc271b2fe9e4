"""The fast estimators against the independent float64 brute force of ``tests/bruteforce.py``.

Real images (``digits16`` at full size with the benchmark's 7×7 hole; ``color16`` cropped to
8×8 with a proportional 3×3 hole), measurements ``y = A x + σ·test_noise[k, :C]`` as in the
benchmark README, every task × pre-inverse, σ ∈ {0.001, 0.01, 0.1, 1}, P ∈ {3, 5, 7}.

* default float32 output: max abs error ≤ 1e-4 (the benchmark bar);
* float64 output (a subset): ≤ 1e-6;
* diagnostics (patch and image log-densities, 99 %-mass counts, source map) on a few cases.

Measurements are rounded to float32 once and the *same* numbers go to both implementations, so
the comparison measures the estimators only. Each brute force is computed once per module.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import bruteforce as bf
from lemmse.estimators import estimate

CASES = bf.TASK_PREINVERSES
_SLOW = pytest.mark.slow
#: The fast tier (-m "not slow") keeps σ = 0.001 and 0.1 at P = 5, every task × pre-inverse; CI runs all.
SIGMAS = (0.001, pytest.param(0.01, marks=_SLOW), 0.1, pytest.param(1.0, marks=_SLOW))
PATCHES = (pytest.param(3, marks=_SLOW), 5, pytest.param(7, marks=_SLOW))
LAM = 0.01
BLUR_STD = 1.0
TOL32 = 1e-4
TOL64 = 1e-6


@dataclass(frozen=True)
class Setting:
    """A small real-image problem: which data set, crop, hole, training and test images."""

    dataset: str
    size: int  # crop side (top-left crop of the 16×16 images)
    hole: int
    train_count: int
    first_test: int  # test image k is dataset[first_test + k], measured with test_noise[k]
    n_y: int


SETTINGS = {
    "digits": Setting("digits16", 16, 7, 20, 1500, 2),
    "color": Setting("color16", 8, 3, 16, 1000, 2),
}


class Oracle:
    """Data, dense operators, measurements and cached brute-force results of every setting."""

    def __init__(self, data: dict[str, torch.Tensor], noise: torch.Tensor):
        self.data = data
        self.noise = noise.numpy().astype(np.float64)
        self._cache: dict = {}

    def _memo(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def train(self, name: str) -> np.ndarray:
        s = SETTINGS[name]
        return self.data[s.dataset][: s.train_count, :, : s.size, : s.size].numpy().astype(np.float64)

    def truth(self, name: str) -> np.ndarray:
        s = SETTINGS[name]
        return self.data[s.dataset][s.first_test : s.first_test + s.n_y, :, : s.size, : s.size].numpy().astype(np.float64)

    def A(self, name: str, task: str) -> np.ndarray:
        s = SETTINGS[name]
        c = self.data[s.dataset].shape[1]
        return self._memo(("A", name, task), lambda: bf.forward_matrix(task, c, s.size, s.size, hole=s.hole,
                                                                       blur_std=BLUR_STD))

    def B(self, name: str, task: str, pre: str) -> np.ndarray:
        return self._memo(("B", name, task, pre),
                          lambda: bf.preinverse_matrix(self.A(name, task), pre, LAM if pre == "tikhonov" else None))

    def y(self, name: str, task: str, sigma: float) -> np.ndarray:
        """``A x + σ·noise[k, :C]`` rounded to float32 (returned as float64 holding float32 values)."""
        def make():
            s = SETTINGS[name]
            x = self.truth(name)
            c = x.shape[1]
            clean = (x.reshape(s.n_y, -1) @ self.A(name, task).T).reshape(x.shape)
            noisy = clean + sigma * self.noise[: s.n_y, :c, : s.size, : s.size]
            return noisy.astype(np.float32).astype(np.float64)
        return self._memo(("y", name, task, sigma), make)

    def reference(self, name: str, task: str, pre: str, sigma: float, estimator: str,
                  patch: int | None = None) -> np.ndarray:
        def make():
            args = (self.train(name), self.y(name, task, sigma), self.A(name, task), self.B(name, task, pre))
            if estimator == "mmse":
                return bf.mmse(*args, sigma)
            if estimator == "emmse":
                return bf.emmse(*args, sigma)
            return bf.lemmse(*args, patch, sigma)
        return self._memo(("ref", name, task, pre, sigma, estimator, patch), make)

    def details(self, name: str, task: str, pre: str, sigma: float, patch: int) -> bf.LemmseDetails:
        return self._memo(("details", name, task, pre, sigma, patch), lambda: bf.lemmse_details(
            self.train(name), self.y(name, task, sigma), self.A(name, task), self.B(name, task, pre), patch, sigma))

    def run(self, name: str, task: str, pre: str, sigma: float, estimator: str, patch: int | None = None,
            dtype: torch.dtype = torch.float32, diagnostics: bool = False, mass: bool = True, **blocks):
        """The package's estimate on the same inputs (float32 values, cast to ``dtype``; ``blocks``: the
        stream's ``key_block``/``query_block``)."""
        s = SETTINGS[name]
        return estimate(
            torch.from_numpy(self.train(name)).to(dtype), torch.from_numpy(self.y(name, task, sigma)).to(dtype),
            task=task, estimator=estimator, sigma=sigma, preinverse=pre,
            patch=patch if estimator == "lemmse" else None,
            hole=s.hole if task == "inpainting" else None,
            blur_std=BLUR_STD if task == "deconvolution" else None,
            lam=LAM if pre == "tikhonov" else None, dtype=dtype, diagnostics=diagnostics, mass=mass, **blocks,
        )


@pytest.fixture(scope="module")
def oracle(digits16, color16, test_noise) -> Oracle:
    return Oracle({"digits16": digits16, "color16": color16}, test_noise)


def assert_close(got: torch.Tensor, ref: np.ndarray, tol: float, what: str) -> None:
    got = got.to(torch.float64).numpy()
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs brute force {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite output"
    err = np.abs(got - ref)
    where = np.unravel_index(int(np.argmax(err)), err.shape)
    assert err.max() <= tol, (f"{what}: max abs error {err.max():.3e} > {tol:g} at {where}: "
                              f"package {got[where]!r}, brute force {ref[where]!r}")


# ------------------------------------------------------------------------------------------------
# float32 (default) against the float64 brute force: every task × pre-inverse × σ (× P)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("patch", PATCHES)
@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("task,pre", CASES)
@pytest.mark.parametrize("name", SETTINGS)
def test_lemmse_float32(oracle, name, task, pre, sigma, patch):
    got = oracle.run(name, task, pre, sigma, "lemmse", patch).xhat
    assert got.dtype == torch.float32
    assert_close(got, oracle.reference(name, task, pre, sigma, "lemmse", patch), TOL32,
                 f"LE-MMSE {name} {task}/{pre} σ={sigma} P={patch}")


@pytest.mark.parametrize("estimator", ["mmse", "emmse"])
@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("task,pre", CASES)
@pytest.mark.parametrize("name", SETTINGS)
def test_global_estimators_float32(oracle, name, task, pre, sigma, estimator):
    got = oracle.run(name, task, pre, sigma, estimator).xhat
    assert got.dtype == torch.float32
    assert_close(got, oracle.reference(name, task, pre, sigma, estimator), TOL32,
                 f"{estimator} {name} {task}/{pre} σ={sigma}")


# ------------------------------------------------------------------------------------------------
# float64 mode: a subset, to 1e-6
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.001, 1.0])
@pytest.mark.parametrize("task,pre", CASES)
def test_lemmse_float64(oracle, task, pre, sigma):
    name, patch = ("digits", 5) if sigma < 0.01 else ("color", 3)
    got = oracle.run(name, task, pre, sigma, "lemmse", patch, dtype=torch.float64).xhat
    assert got.dtype == torch.float64
    assert_close(got, oracle.reference(name, task, pre, sigma, "lemmse", patch), TOL64,
                 f"LE-MMSE float64 {name} {task}/{pre} σ={sigma} P={patch}")


@pytest.mark.parametrize("estimator", ["mmse", "emmse"])
@pytest.mark.parametrize("task,pre", CASES)
def test_global_estimators_float64(oracle, task, pre, estimator):
    sigma = 0.1
    got = oracle.run("color", task, pre, sigma, estimator, dtype=torch.float64).xhat
    assert got.dtype == torch.float64
    assert_close(got, oracle.reference("color", task, pre, sigma, estimator), TOL64,
                 f"{estimator} float64 color {task}/{pre} σ={sigma}")


# ------------------------------------------------------------------------------------------------
# diagnostics
# ------------------------------------------------------------------------------------------------

DIAGNOSTIC_CASES = [
    ("digits", "denoising", "identity", 0.1, 3),
    ("digits", "inpainting", "pinv", 0.01, 5),  # rank-0 and partial strata
    ("color", "inpainting", "pinv", 1.0, 3),
    ("color", "deconvolution", "pinv", 0.01, 3),  # whitening, pseudo-determinant constants
    ("digits", "deconvolution", "tikhonov", 1.0, 5),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,task,pre,sigma,patch", DIAGNOSTIC_CASES)
def test_diagnostics(oracle, name, task, pre, sigma, patch, dtype):
    from lemmse.estimators.api import DIAGNOSTIC_MAPS, DIAGNOSTIC_SUMMARIES

    res = oracle.run(name, task, pre, sigma, "lemmse", patch, dtype=dtype, diagnostics=True)
    ref = oracle.details(name, task, pre, sigma, patch)
    diag = res.diagnostics
    label = f"{name} {task}/{pre} σ={sigma} P={patch} {dtype}"
    n, h, w = ref.patch_log_density.shape
    kinds = {"mass99": torch.int64, "source": torch.int64, "source_image": torch.int64}
    expected = {**{k: ((n, h, w), kinds.get(k, torch.float64)) for k in DIAGNOSTIC_MAPS},
                **{k: ((n,), torch.float64) for k in DIAGNOSTIC_SUMMARIES}}
    assert sorted(diag) == sorted(expected)
    for key, (shape, kind) in expected.items():
        assert tuple(diag[key].shape) == shape and diag[key].dtype == kind, (
            f"{label}: {key} is {tuple(diag[key].shape)} {diag[key].dtype}, expected {shape} {kind}")
    tol = TOL32 if dtype == torch.float32 else TOL64
    assert_close(res.xhat, ref.xhat, tol, f"{label} xhat")

    # both density conventions; log-densities are O(10²–10³): absolute tolerance scaled like the values
    for key, value in (("patch_log_density", ref.patch_log_density),
                       ("patch_log_density_paper", ref.patch_log_density_paper)):
        assert np.isfinite(diag[key].numpy()).all()
        assert_close(diag[key], value, tol * max(1.0, float(np.abs(value).max())), f"{label} {key}")
    A = oracle.A(name, task)
    for key, paper in (("image_log_density", False), ("image_log_density_paper", True)):
        value = bf.image_log_density(oracle.train(name), oracle.y(name, task, sigma), A, sigma, paper=paper)
        assert_close(diag[key], value, tol * max(1.0, float(np.abs(value).max())), f"{label} {key}")

    # 99 % mass: an upper bound, within the documented bound of lemmse.estimators.mass
    mass = diag["mass99"].numpy()
    bounds = ref.mass99_bounds if dtype == torch.float64 else ref.mass99_bounds_loose
    lo, hi = bounds[..., 0], bounds[..., 1]
    slack = 1 + (np.exp(bf.MASS_NEAR_LOG) - 1) * ref.mass99_near
    bad = (mass < lo) | (mass - hi >= slack)
    assert not bad.any(), (f"{label} mass99 out of bounds at {np.argwhere(bad)[:5].tolist()}: package "
                           f"{mass[bad][:5].tolist()}, brute force [{lo[bad][:5].tolist()}, {hi[bad][:5].tolist()}]")
    observed = ref.stratum_rank > 0
    for i in range(n):
        kept = mass[i][observed[i]].astype(np.float64)
        np.testing.assert_allclose(diag["mass99_observed_mean"][i].item(), kept.mean(), rtol=1e-12)
        np.testing.assert_allclose(diag["mass99_observed_median"][i].item(), np.median(kept), rtol=1e-12)

    # source maps: the paper's single patch (§D.5) and the image-level share
    for key, value, margin in (("source", ref.single_patch_source, ref.single_patch_margin),
                               ("source_image", ref.source, ref.source_margin)):
        got = diag[key].numpy()
        clear = margin > 1e-6  # shares within 1e-6 of 50 % are a coin toss in floating point
        assert clear.mean() > 0.9
        bad = clear & (got != value)
        assert not bad.any(), (f"{label} {key} differs at {np.argwhere(bad)[:5].tolist()}: package "
                               f"{got[bad][:5].tolist()}, brute force {value[bad][:5].tolist()}")


@pytest.mark.parametrize("name,task,pre,sigma,patch", [DIAGNOSTIC_CASES[1], DIAGNOSTIC_CASES[4]])
def test_diagnostics_without_the_mass_pass_are_the_same_values(oracle, name, task, pre, sigma, patch):
    """mass=False: every diagnostic but the three of MASS_DIAGNOSTICS, bit for bit those of the full run on
    the same tiles; on each one's default tiles (longer key blocks with the histogram), equal to rounding."""
    from lemmse.estimators.api import DIAGNOSTICS, MASS_DIAGNOSTICS
    from lemmse.estimators.tiles import stream_blocks

    key_block, query_block = stream_blocks(mass=True)
    full = oracle.run(name, task, pre, sigma, "lemmse", patch, diagnostics=True)
    lean = oracle.run(name, task, pre, sigma, "lemmse", patch, diagnostics=True, mass=False, key_block=key_block,
                      query_block=query_block)
    assert sorted(lean.diagnostics) == sorted(set(DIAGNOSTICS) - set(MASS_DIAGNOSTICS))
    assert torch.equal(lean.xhat, full.xhat)
    for key, value in lean.diagnostics.items():
        assert torch.equal(value, full.diagnostics[key]), key
    lean_default = oracle.run(name, task, pre, sigma, "lemmse", patch, diagnostics=True, mass=False)
    torch.testing.assert_close(lean_default.xhat, full.xhat, rtol=1e-5, atol=1e-6)


def test_mass_bound_width_is_within_the_tested_slack(oracle):
    """The tests above allow near-ties within bf.MASS_NEAR_LOG: the implementation's bin width must not exceed it."""
    from lemmse.estimators.mass import bin_width

    for k in SETTINGS:
        assert bin_width(oracle.train(k).shape[0] * SETTINGS[k].size ** 2) <= bf.MASS_NEAR_LOG


def test_diagnostics_cover_the_interesting_cases(oracle):
    """Guards the diagnostic cases above against silently becoming trivial."""
    digits = oracle.details("digits", "inpainting", "pinv", 0.01, 5)
    assert (digits.stratum_rank == 0).any() and (digits.stratum_rank == 25).any()
    assert ((digits.stratum_rank > 0) & (digits.stratum_rank < 25)).any()
    spread = oracle.details("digits", "deconvolution", "tikhonov", 1.0, 5)
    assert (spread.mass99_bounds[..., 0] > 10).any(), "σ = 1 should spread the mass"
    assert (spread.source == -1).any()
    sharp = oracle.details("digits", "denoising", "identity", 0.1, 3)
    assert (sharp.source >= 0).any()
    assert (sharp.single_patch_source >= 0).any() and (sharp.single_patch_source == -1).any()
    assert (sharp.single_patch_source != sharp.source).any(), "the two source maps should differ somewhere"
    hidden = int((digits.stratum_rank[0] == 0).sum())  # S₀, fully hidden positions per image
    expected = int(np.ceil(0.99 * oracle.train("digits").shape[0] * hidden))
    assert (digits.mass99_bounds[..., 0][digits.stratum_rank == 0] == expected).all(), "rank-0 pixels: ⌈0.99·D·S₀⌉"
