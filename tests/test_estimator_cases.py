"""The fast LE-MMSE paths (cases 1 and 2 of MATH.md) against the general case-3 path.

``lemmse.estimators.lemmse_general`` builds every ``Q_n = Π_n B`` as an explicit matrix and applies
the rank-stratified degenerate-Gaussian formula (paper Prop. B.5) to *any* linear ``B``; it is
therefore an oracle for the convolution (case 1) and mask (case 2) fast paths, which share none of
its code beyond patch offsets. Real images (digits and colour crops of the benchmark data),
``y = A x + σ·test_noise[k, :C]``, every task × pre-inverse, σ ∈ {0.01, 0.3}, P ∈ {3, 5}, float64.

Also checked: strata are decided from the mask, not from measured values (tiny and exactly-zero
observed pixels); a patch entirely inside the hole with ``B = A⁺`` returns the equal-weight
average of the centre pixels of the fully hidden training patches (Prop. B.5, rank 0); reusing
one operator object across patch sizes gives the same numbers as fresh objects.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import bruteforce as bf

from lemmse.estimators import estimate, estimate_with, lemmse_general
from lemmse.estimators.oracle import patch_indices
from lemmse.operators import make_problem
from lemmse.operators.linear_maps import CircularConvolution, PixelWeights

CASES = bf.TASK_PREINVERSES
SIGMAS = (0.01, 0.3)
PATCHES = (3, 5)
LAM = 0.01
TOL = 1e-6


@dataclass(frozen=True)
class Crop:
    """A crop of a benchmark data set: rows/cols ``[top, top + size)``, hole side, counts."""

    fixture: str
    top: int
    size: int
    hole: int
    train_count: int
    first_test: int
    n_y: int


CROPS = {
    "digits12": Crop("digits16", 2, 12, 5, 24, 1500, 2),
    "color8": Crop("color16", 4, 8, 3, 16, 1000, 2),
}


def crop_data(request: pytest.FixtureRequest, name: str):
    """``(crop, train, x)``: float32 training crops and float64 clean test crops."""
    crop = CROPS[name]
    data = request.getfixturevalue(crop.fixture)
    window = data[:, :, crop.top : crop.top + crop.size, crop.top : crop.top + crop.size]
    train = window[: crop.train_count].contiguous()
    x = window[crop.first_test : crop.first_test + crop.n_y].to(torch.float64)
    return crop, train, x


def operator_kwargs(task: str, crop: Crop) -> dict:
    return {"inpainting": {"hole": crop.hole}, "deconvolution": {"blur_std": 1.0}}.get(task, {})


def measure(problem, x: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    """``y = A x + σ·noise[k, :C]`` in float64 (the same numbers go to both implementations)."""
    channels = x.shape[1]
    return problem.A(x) + sigma * noise[: x.shape[0], :channels, : x.shape[2], : x.shape[3]].to(torch.float64)


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: f"P{p}")
@pytest.mark.parametrize("sigma", SIGMAS, ids=lambda s: f"sigma{s:g}")
@pytest.mark.parametrize("task,pre", CASES, ids=[f"{t}-{p}" for t, p in CASES])
@pytest.mark.parametrize("crop_name", sorted(CROPS))
def test_fast_lemmse_matches_general_case3(request, test_noise, crop_name, task, pre, sigma, patch):
    """Fast LE-MMSE (float64) equals the explicit-matrix Prop. B.5 oracle to 1e-6 max abs.

    The fast path is case 1 for every convolution ``B`` (identity, deconvolution adjoint/pinv/
    Tikhonov) and case 2 for the inpainting masks (adjoint, pinv); the oracle is case 3 for all.
    """
    crop, train, x = crop_data(request, crop_name)
    kwargs = operator_kwargs(task, crop)
    lam = LAM if pre == "tikhonov" else None
    problem = make_problem(task, (crop.size, crop.size), **kwargs)
    B = problem.preinverse(pre, lam)
    expected_case = 2 if (task == "inpainting" and pre != "identity") else 1
    assert problem.le_mmse_case(B) == expected_case
    y = measure(problem, x, sigma, test_noise)

    fast = estimate(train, y, task=task, estimator="lemmse", sigma=sigma, preinverse=pre, patch=patch,
                    lam=lam, dtype=torch.float64, **kwargs).xhat
    ref = lemmse_general(train, y, problem, B, patch, torch.full((y.shape[0],), sigma, dtype=torch.float64))
    assert fast.shape == y.shape and fast.dtype == torch.float64
    err = float((fast - ref).abs().max())
    assert err <= TOL, f"max abs difference {err:.3e} from case 3"
    # Not vacuous: the estimate is a non-trivial image (not the constant mean).
    assert float(ref.std()) > 1e-3


# --------------------------------------------------------------------------------------------
# (a) strata from the mask, not from the measured values


def _window_patterns(mask: torch.Tensor, patch: int) -> tuple[torch.Tensor, set[bytes]]:
    """Per-position boolean patch pattern ``(H·W, P²)`` of the mask, and the set of all patterns."""
    h, w = mask.shape
    idx = patch_indices(1, h, w, patch)
    pats = mask.reshape(-1)[idx] > 0
    return pats, {bytes(p.to(torch.uint8).tolist()) for p in pats}


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: f"P{p}")
def test_strata_come_from_mask_not_from_values(request, test_noise, patch):
    """Observed pixels measured as 1e-12 or exactly 0.0 are still observed.

    Case 2 must decide each query's stratum from the mask. The check: (i) the result is
    continuous in those values (0.0 vs 1e-12 vs 1e-12 with the other sign agree to 1e-9 — a
    value-based stratum would jump); (ii) it equals the case-3 oracle at every output pixel whose
    measured patch is not degenerate for the oracle's projection test (the oracle tests support
    membership numerically, so where the patch's non-zero entries fit inside the support of
    another mask pattern of no higher rank it — legitimately, for a measure-zero event — mixes in
    that pattern's positions; those pixels are excluded, and it is asserted that at least ten
    windows holding tiny pixels remain); (iii) it
    differs from the estimate where those pixels are declared hidden in ``B``.
    """
    crop, train, x = crop_data(request, "digits12")
    h = crop.size
    problem = make_problem("inpainting", (h, h), hole=crop.hole)
    B = problem.preinverse("pinv")
    mask = problem.mask
    sigma = 0.1
    y = measure(problem, x, sigma, test_noise)[:1]
    # Observed pixels forced to tiny values: a checkerboard block above-left of the hole, and
    # one single pixel far from it.
    tiny = torch.zeros(h, h, dtype=torch.bool)
    for i in range(0, 4):
        for j in range(0, 4):
            tiny[i, j] = (i + j) % 2 == 0
    tiny[9, 1] = True
    assert bool((mask[tiny] == 1).all()), "the tiny pixels must be observed"
    values = torch.where(torch.arange(h * h).reshape(h, h) % 3 == 0, 0.0, 1e-12).to(torch.float64)
    y0 = y.clone()
    y0[0, 0][tiny] = values[tiny]
    y1 = y.clone()
    y1[0, 0][tiny] = 1e-12
    y2 = y.clone()
    y2[0, 0][tiny] = -1e-12
    sig = torch.tensor([sigma], dtype=torch.float64)

    def fast(v):
        return estimate_with(train, v, problem, B, estimator="lemmse", sigma=sigma, patch=patch,
                             dtype=torch.float64).xhat

    f0, f1, f2 = fast(y0), fast(y1), fast(y2)
    assert float((f0 - f1).abs().max()) <= 1e-9
    assert float((f0 - f2).abs().max()) <= 1e-9

    # (ii) against the oracle where its numerical support test is unambiguous.
    oracle = lemmse_general(train, y0, problem, B, patch, sig)
    pats, all_patterns = _window_patterns(mask, patch)
    tiny_in_window = tiny.reshape(-1)[patch_indices(1, h, h, patch)]
    nonzero = pats & ~tiny_in_window  # where the measured patch is not (numerically) zero
    pattern_stack = torch.stack([torch.tensor(list(b), dtype=torch.bool) for b in sorted(all_patterns)])
    # The oracle takes the lowest-rank stratum with a member whose support holds the patch, and
    # within it every member whose support holds it: ambiguous where another pattern of rank
    # <= the query's own holds the non-zero entries.
    other_holds = ((pattern_stack.sum(dim=1)[None, :] <= pats.sum(dim=1)[:, None])
                   & (pattern_stack[None] != pats[:, None]).any(dim=2)
                   & (nonzero[:, None, :] <= pattern_stack[None]).all(dim=2))
    ambiguous = other_holds.any(dim=1).reshape(h, h)
    touched = tiny_in_window.any(dim=1).reshape(h, h)
    clean = touched & ~ambiguous
    assert int(clean.sum()) >= 10, "the test needs many windows holding tiny observed pixels"
    diff = (f0 - oracle).abs()[0, 0]
    assert float(diff[~ambiguous].max()) <= TOL

    # (iii) declaring those pixels hidden is a different estimator (strata and keys change).
    hidden_mask = mask.clone()
    hidden_mask[tiny] = 0.0
    B_hidden = PixelWeights(hidden_mask)
    assert problem.le_mmse_case(B_hidden) == 2
    f_hidden = estimate_with(train, y0, problem, B_hidden, estimator="lemmse", sigma=sigma, patch=patch,
                             dtype=torch.float64).xhat
    assert float((f_hidden - f0)[0, 0][touched].abs().max()) > 1e-3


# --------------------------------------------------------------------------------------------
# (b) rank-0 queries


@pytest.mark.parametrize("pre", ["pinv", "adjoint"])
@pytest.mark.parametrize("crop_name", sorted(CROPS))
def test_query_inside_hole_averages_fully_hidden_centres(request, test_noise, crop_name, pre):
    """With ``B = A⁺`` a measured patch lying entirely in the hole has rank 0 (Prop. B.5).

    It then outputs the equal-weight average, over all training images ``d`` and all positions
    ``n`` whose patch is entirely hidden, of the centre pixel ``(x_d)_n`` — computed here directly.
    Any σ and any y give the same value at such pixels.
    """
    crop, train, x = crop_data(request, crop_name)
    h = crop.size
    patch = 3
    problem = make_problem("inpainting", (h, h), hole=crop.hole)
    problem.preinverse(pre)  # the pre-inverse under test exists for inpainting
    mask = problem.mask
    # Positions whose P×P window lies entirely in the hole: the hole shrunk by P//2.
    pats, _ = _window_patterns(mask, patch)
    fully_hidden = (~pats).all(dim=1).reshape(h, h)
    assert int(fully_hidden.sum()) >= 1
    train64 = train.to(torch.float64)
    expected = train64[:, :, fully_hidden].mean(dim=(0, 2))  # (C,)

    for sigma in (0.05, 0.7):
        y = measure(problem, x, sigma, test_noise)
        out = estimate(train, y, task="inpainting", estimator="lemmse", sigma=sigma, preinverse=pre,
                       patch=patch, hole=crop.hole, dtype=torch.float64).xhat
        got = out[:, :, fully_hidden]  # (n, C, count)
        err = float((got - expected[None, :, None]).abs().max())
        assert err <= 1e-12, f"rank-0 output off by {err:.3e}"
    # Not vacuous: the average is not what a single training pixel or the global mean gives.
    assert float((expected - train64.mean(dim=(0, 2, 3))).abs().max()) > 1e-4


# --------------------------------------------------------------------------------------------
# (c) one operator object across patch sizes


@pytest.mark.parametrize("task,pre", [("denoising", "identity"), ("inpainting", "pinv"),
                                      ("deconvolution", "tikhonov")],
                         ids=["denoising-identity", "inpainting-pinv", "deconvolution-tikhonov"])
def test_operator_reused_across_patch_sizes(request, test_noise, task, pre):
    """One ``problem``/``B`` used for P = 3, 5, 3 gives the results of fresh objects.

    Guards against per-patch state cached on the operator (features, strata, whitening).
    """
    crop, train, x = crop_data(request, "color8")
    kwargs = operator_kwargs(task, crop)
    lam = LAM if pre == "tikhonov" else None
    shared = make_problem(task, (crop.size, crop.size), **kwargs)
    shared_B = shared.preinverse(pre, lam)
    y = measure(shared, x, 0.1, test_noise)
    results = []
    for patch in (3, 5, 3):
        reused = estimate_with(train, y, shared, shared_B, estimator="lemmse", sigma=0.1, patch=patch,
                               dtype=torch.float64).xhat
        fresh_problem = make_problem(task, (crop.size, crop.size), **kwargs)
        fresh = estimate_with(train, y, fresh_problem, fresh_problem.preinverse(pre, lam), estimator="lemmse",
                              sigma=0.1, patch=patch, dtype=torch.float64).xhat
        assert torch.equal(reused, fresh), f"P={patch}: reused operator differs from a fresh one"
        results.append(reused)
    assert torch.equal(results[0], results[2])
    assert float((results[0] - results[1]).abs().max()) > 1e-4, "P=3 and P=5 should differ"
    assert isinstance(shared_B, (CircularConvolution, PixelWeights))
