"""Mathematical properties of the estimators (MATH.md, "Properties to test"), on real image crops.

Each test states a property that holds exactly in exact arithmetic, checks it with a tolerance
justified by the dtype, and — where a property could hold vacuously (a constant output, a zero
Jacobian) — also checks a contrasting case where it must fail. Inputs that vary (σ, constants,
shifts, block sizes, batch splits) are drawn by hypothesis.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lemmse.estimators import estimate

CROP = slice(4, 12)  # 8×8 centre crop of the 16×16 benchmark images
SIZE = 8
HOLE = 3
LAM = 0.01


def op_kwargs(task: str) -> dict:
    return {"inpainting": {"hole": HOLE}, "deconvolution": {"blur_std": 1.0}}.get(task, {})


@pytest.fixture(scope="module")
def digits(digits16):
    """``(train (20, 1, 8, 8) float32, test (4, 1, 8, 8) float64)`` digit crops."""
    crop = digits16[:, :, CROP, CROP]
    return crop[:20].contiguous(), crop[1500:1504].to(torch.float64)


@pytest.fixture(scope="module")
def colour(color16):
    """``(train (16, 3, 8, 8) float32, test (4, 3, 8, 8) float64)`` colour crops."""
    crop = color16[:, :, CROP, CROP]
    return crop[:16].contiguous(), crop[1000:1004].to(torch.float64)


@pytest.fixture(scope="module")
def noise(test_noise):
    return test_noise[:, :, CROP, CROP].to(torch.float64)


def measure(task: str, x: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    from lemmse.operators import make_problem

    problem = make_problem(task, (SIZE, SIZE), **op_kwargs(task))
    return problem.A(x) + sigma * noise[: x.shape[0], : x.shape[1]]


def run(train, y, task="denoising", pre="identity", estimator="lemmse", sigma=0.1, patch=3,
        dtype=torch.float64, **kw) -> torch.Tensor:
    lam = LAM if pre == "tikhonov" else None
    if estimator not in ("lemmse", "smoothed"):
        patch = None
    return estimate(train, y, task=task, estimator=estimator, sigma=sigma, preinverse=pre, patch=patch,
                    lam=lam, dtype=dtype, **op_kwargs(task), **kw).xhat


ALL_ESTIMATORS = ("mmse", "emmse", "lemmse", "smoothed")
SOME_PATHS = [("denoising", "identity"), ("inpainting", "identity"), ("inpainting", "pinv"),
              ("deconvolution", "tikhonov")]
CONV_PATHS = [("denoising", "identity"), ("deconvolution", "identity"), ("deconvolution", "adjoint"),
              ("deconvolution", "pinv"), ("deconvolution", "tikhonov")]


def path_id(p):
    return f"{p[0]}-{p[1]}"


# --------------------------------------------------------------------------------------------
# weights sum to one


@pytest.mark.parametrize("path", SOME_PATHS, ids=path_id)
@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
@settings(max_examples=10)
@given(c=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), sigma=st.floats(0.005, 3.0),
       scale=st.floats(-3.0, 3.0), seed=st.integers(0, 2**16))
def test_constant_training_set_gives_that_constant(estimator, path, c, sigma, scale, seed):
    """Weights sum to one: if every training image is the constant image c (one value per channel),
    every estimator outputs c at every pixel, whatever y (here arbitrary, even outside [0, 1])."""
    task, pre = path
    const = torch.tensor(c, dtype=torch.float32)[:, None, None].expand(3, SIZE, SIZE)
    train = const[None].repeat(4, 1, 1, 1).contiguous()
    gen = torch.Generator().manual_seed(seed)
    y = scale * torch.randn(2, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    out = run(train, y, task, pre, estimator, sigma=sigma, smoothing=0.2, samples=2)
    assert out.shape == y.shape
    err = float((out - const.to(torch.float64)[None]).abs().max())
    assert err <= 1e-12, f"output differs from the constant by {err:.2e}"


# --------------------------------------------------------------------------------------------
# σ → 0 and σ → ∞


@settings(max_examples=10)
@given(k=st.integers(0, 15), seed=st.integers(0, 2**16))
def test_small_sigma_lemmse_recovers_training_image(colour, k, seed):
    """σ → 0: each output pixel is the centre of the best-matching training patch. For
    y = x_k + 1e-7·z (denoising, B = I) the best match at every pixel is x_k's own patch, so
    the LE-MMSE returns x_k (patches equal to x_k's have the same centre pixel)."""
    train, _ = colour
    gen = torch.Generator().manual_seed(seed)
    y = train[k : k + 1].to(torch.float64) + 1e-7 * torch.randn(1, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    out = run(train, y, sigma=1e-3, patch=3)
    err = float((out - train[k : k + 1].to(torch.float64)).abs().max())
    assert err <= 1e-6, f"σ→0 LE-MMSE is {err:.2e} from the training image"


def test_small_sigma_lemmse_is_nearest_patch_centre(digits, noise):
    """σ → 0 on a generic (test-image) measurement: the LE-MMSE is the centre pixel of the
    nearest training patch, found here by brute force over all D·H·W circular patches. Pixels
    where the two nearest squared distances are within 5e-4 (rival weight ratio > e^-60 at
    σ = 2e-3) are skipped; at least half the pixels must remain."""
    from lemmse.estimators.oracle import patch_indices

    train, x = digits
    sigma, patch = 2e-3, 3
    y = x[:2] + 0.05 * noise[:2, :1]
    out = run(train, y, sigma=sigma, patch=patch)
    idx = patch_indices(1, SIZE, SIZE, patch)
    keys = train.to(torch.float64).reshape(train.shape[0], -1)[:, idx].reshape(-1, patch * patch)
    centres = train.to(torch.float64).reshape(train.shape[0], -1).reshape(-1)
    checked = 0
    for i in range(y.shape[0]):
        queries = y[i].reshape(-1)[idx]
        d2 = torch.cdist(queries, keys) ** 2  # (H·W, D·H·W)
        best = d2.min(dim=1)
        # Exact duplicates of the best patch share its centre pixel, so they are not rivals.
        second = torch.where(d2 <= best.values[:, None], math.inf, d2).min(dim=1).values
        clear = (second - best.values) > 5e-4
        expected = centres[best.indices]
        got = out[i, 0].reshape(-1)
        err = float((got[clear] - expected[clear]).abs().max())
        assert err <= 1e-6, f"σ→0 LE-MMSE is {err:.2e} from the nearest patch's centre"
        checked += int(clear.sum())
    assert checked >= 0.5 * y.shape[0] * SIZE * SIZE


@pytest.mark.parametrize("estimator", ["mmse", "emmse"])
def test_small_sigma_mmse_returns_nearest_training_image(digits, noise, estimator):
    """σ → 0: the MMSE returns the nearest training image, the E-MMSE the nearest cyclic shift
    of a training image (brute force over all D·H·W shifted images), for B = I."""
    train, x = digits
    y = x + 0.05 * noise[: x.shape[0], :1]
    out = run(train, y, estimator=estimator, sigma=1e-3)
    t = train.to(torch.float64)
    if estimator == "mmse":
        candidates = t
    else:
        candidates = torch.stack([torch.roll(t, shifts=(a, b), dims=(2, 3)) for a in range(SIZE)
                                  for b in range(SIZE)], dim=1).reshape(-1, 1, SIZE, SIZE)
    d2 = ((y[:, None] - candidates[None]) ** 2).sum(dim=(2, 3, 4))
    ordered = d2.sort(dim=1).values
    assert bool(((ordered[:, 1] - ordered[:, 0]) > 5e-3).all()), "need a clear nearest neighbour"
    expected = candidates[d2.argmin(dim=1)]
    assert float((out - expected).abs().max()) <= 1e-6


@pytest.mark.parametrize("dataset", ["digits", "colour"])
def test_large_sigma_gives_training_means(request, noise, dataset):
    """σ → ∞ (1e4): all weights equal. LE-MMSE (B = I) → the mean training pixel per channel,
    E-MMSE → the same constant, MMSE → the mean training image. Logit differences are
    ≤ ‖q − k‖²/2σ² ≈ 1e-7, so the outputs match to 1e-6."""
    train, x = request.getfixturevalue(dataset)
    y = x[:2] + 0.1 * noise[:2, : x.shape[1]]
    t = train.to(torch.float64)
    pixel_mean = t.mean(dim=(0, 2, 3))[None, :, None, None].expand_as(y)
    image_mean = t.mean(dim=0, keepdim=True).expand_as(y)
    assert float((image_mean - pixel_mean).abs().max()) > 1e-2  # the two limits differ
    for estimator, expected in (("lemmse", pixel_mean), ("emmse", pixel_mean), ("mmse", image_mean)):
        out = run(train, y, estimator=estimator, sigma=1e4, patch=5)
        err = float((out - expected).abs().max())
        assert err <= 1e-6, f"{estimator}: {err:.2e} from the σ→∞ limit"


# --------------------------------------------------------------------------------------------
# translation equivariance


@pytest.mark.parametrize("estimator", ["lemmse", "emmse"])
@pytest.mark.parametrize("path", CONV_PATHS, ids=path_id)
@settings(max_examples=8)
@given(shift=st.tuples(st.integers(-SIZE + 1, SIZE - 1), st.integers(-SIZE + 1, SIZE - 1)))
def test_translation_equivariance_for_convolution_preinverses(colour, noise, path, estimator, shift):
    """x̂(T_g y) = T_g x̂(y) for circular-convolution B (case 1 and the E-MMSE), float32, 1e-5.

    Exact in exact arithmetic (circular patches; A and B commute with shifts); float32 sums of
    the same terms in the same order per pixel leave rounding ~1e-7."""
    task, pre = path
    train, x = colour
    y = measure(task, x[:2], 0.1, noise).to(torch.float32)
    out = run(train, y, task, pre, estimator, sigma=0.1, patch=3, dtype=torch.float32)
    shifted = run(train, torch.roll(y, shifts=shift, dims=(2, 3)), task, pre, estimator, sigma=0.1, patch=3,
                  dtype=torch.float32)
    err = float((shifted - torch.roll(out, shifts=shift, dims=(2, 3))).abs().max())
    assert err <= 1e-5, f"shift {shift}: equivariance error {err:.2e}"


def test_translation_equivariance_fails_for_mmse(colour, noise):
    """Contrast: the MMSE (memorising whole images) is not shift-equivariant, so the
    equivariance test above is not vacuous."""
    train, x = colour
    y = (x[:2] + 0.1 * noise[:2]).to(torch.float32)
    out = run(train, y, estimator="mmse", sigma=0.1, dtype=torch.float32)
    shifted = run(train, torch.roll(y, shifts=(2, 3), dims=(2, 3)), estimator="mmse", sigma=0.1,
                  dtype=torch.float32)
    assert float((shifted - torch.roll(out, shifts=(2, 3), dims=(2, 3))).abs().max()) > 1e-2


# --------------------------------------------------------------------------------------------
# locality


@pytest.mark.parametrize("path", [("denoising", "identity"), ("inpainting", "identity"),
                                  ("deconvolution", "identity")], ids=path_id)
@settings(max_examples=10)
@given(pixel=st.tuples(st.integers(0, SIZE - 1), st.integers(0, SIZE - 1)),
       patch=st.sampled_from([3, 5]), delta=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_locality_for_identity_preinverse(digits, noise, path, pixel, patch, delta, seed):
    """B = I: x̂_{n'} depends on y only through its P×P window at n'. Changing y at every pixel
    outside the window leaves x̂_{n'} unchanged (to 1e-12 in float64); changing the pixels inside
    the window (and only those) changes it."""
    task, pre = path
    train, x = digits
    y = measure(task, x[:1], 0.1, noise)
    i, j = pixel
    r = patch // 2
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    for a in range(-r, r + 1):
        for b in range(-r, r + 1):
            inside[(i + a) % SIZE, (j + b) % SIZE] = True
    gen = torch.Generator().manual_seed(seed)
    bump = delta * torch.randn(SIZE, SIZE, generator=gen, dtype=torch.float64)
    y_out = y.clone()
    y_out[0, 0] += torch.where(inside, 0.0, bump)
    y_in = y.clone()
    y_in[0, 0] += torch.where(inside, bump, 0.0)
    base, moved_out, moved_in = (run(train, v, task, pre, sigma=0.3, patch=patch) for v in (y, y_out, y_in))
    assert abs(float(moved_out[0, 0, i, j] - base[0, 0, i, j])) <= 1e-12
    assert float((moved_out - base).abs().max()) > 1e-4  # other pixels did see the change
    assert abs(float(moved_in[0, 0, i, j] - base[0, 0, i, j])) > 1e-8


def test_physics_aware_deconvolution_is_not_local(digits, noise):
    """Contrast: with B = A⁺ (deconvolution) the patch of B y at n' depends on all of y, so a
    change far outside the window does move x̂_{n'}."""
    train, x = digits
    y = measure("deconvolution", x[:1], 0.05, noise)
    y2 = y.clone()
    y2[0, 0, 4, 4] += 0.5
    a = run(train, y, "deconvolution", "pinv", sigma=0.05, patch=3)
    b = run(train, y2, "deconvolution", "pinv", sigma=0.05, patch=3)
    assert abs(float(a[0, 0, 0, 0] - b[0, 0, 0, 0])) > 1e-9


# --------------------------------------------------------------------------------------------
# MMSE: convex hull, explicit weights


@pytest.mark.parametrize("path", [("denoising", "identity"), ("inpainting", "pinv"),
                                  ("deconvolution", "identity")], ids=path_id)
@settings(max_examples=10)
@given(sigma=st.floats(0.05, 2.0), k=st.integers(0, 3), amp=st.floats(0.0, 2.0))
def test_mmse_is_the_convex_combination_of_training_images(colour, noise, path, sigma, k, amp):
    """The MMSE is Σ_d w_d x_d with w_d ∝ exp(−‖Π_{Im Bᵀ}(y − A x_d)‖²/2σ²) (float64 weights
    computed here; Π = mask for B = A⁺ inpainting, I otherwise), hence inside the convex hull of
    the training set (pixelwise between min and max). float32 output: 1e-5."""
    from lemmse.operators import make_problem

    task, pre = path
    train, x = colour
    problem = make_problem(task, (SIZE, SIZE), **op_kwargs(task))
    y = problem.A(x[k : k + 1]) + amp * noise[k : k + 1]
    out = run(train, y, task, pre, "mmse", sigma=sigma, dtype=torch.float32).to(torch.float64)
    t = train.to(torch.float64)
    proj = problem.mask if pre == "pinv" else torch.ones(SIZE, SIZE, dtype=torch.float64)
    d2 = ((proj * (y - problem.A(t))) ** 2).sum(dim=(1, 2, 3))
    w = torch.softmax(-d2 / (2 * sigma**2), dim=0)
    expected = torch.einsum("d,dchw->chw", w, t)[None]
    assert float((out - expected).abs().max()) <= 1e-5
    lo, hi = t.min(dim=0).values, t.max(dim=0).values
    assert bool((out[0] >= lo - 1e-6).all() and (out[0] <= hi + 1e-6).all())


# --------------------------------------------------------------------------------------------
# smoothed LE-MMSE


def test_smoothed_estimator(colour, noise):
    """s = 0 gives the LE-MMSE (any K); s > 0 is reproducible for a fixed seed, changes with the
    seed, and differs from the LE-MMSE."""
    train, x = colour
    y = (x[:2] + 0.1 * noise[:2]).to(torch.float32)
    kw = dict(sigma=0.1, patch=3, dtype=torch.float32)
    plain = run(train, y, **kw)
    zero = run(train, y, estimator="smoothed", smoothing=0.0, samples=3, seed=5, **kw)
    assert float((zero - plain).abs().max()) <= 1e-6
    a = run(train, y, estimator="smoothed", smoothing=0.1, samples=2, seed=3, **kw)
    b = run(train, y, estimator="smoothed", smoothing=0.1, samples=2, seed=3, **kw)
    c = run(train, y, estimator="smoothed", smoothing=0.1, samples=2, seed=4, **kw)
    assert torch.equal(a, b)
    assert float((a - c).abs().max()) > 1e-3
    assert float((a - plain).abs().max()) > 1e-3


# --------------------------------------------------------------------------------------------
# Jacobians: LE-MMSE is not a posterior mean, the MMSE is


def fd_jacobian(train, y: torch.Tensor, h: float = 1e-6, **kw) -> torch.Tensor:
    """Central finite-difference Jacobian ``(N, N)`` of x̂ at ``y`` ``(1, C, H, W)``, float64, one
    batched call (every perturbed measurement in the same batch)."""
    n = y.numel()
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *y.shape[1:])
    batch = torch.cat([y + h * eye, y - h * eye])
    out = run(train, batch, dtype=torch.float64, **kw).reshape(2 * n, n)
    return ((out[:n] - out[n:]) / (2 * h)).T  # J[i, j] = ∂x̂_i / ∂y_j


def test_jacobian_symmetry_contrast(digits, noise):
    """The MMSE denoiser's Jacobian is Cov[x | y]/σ², symmetric (to 1e-6 relative); the
    LE-MMSE's is not (‖J − Jᵀ‖/‖J‖ > 1e-2; paper Cor. 3.9: it is not a posterior mean)."""
    train, x = digits
    y = x[:1] + 0.2 * noise[:1, :1]
    j_mmse = fd_jacobian(train, y, estimator="mmse", sigma=0.4)
    j_le = fd_jacobian(train, y, estimator="lemmse", sigma=0.2, patch=3)
    for j in (j_mmse, j_le):
        assert float(j.norm()) > 1e-1, "Jacobian too small for the test to mean anything"
    asym_mmse = float((j_mmse - j_mmse.T).norm() / j_mmse.norm())
    asym_le = float((j_le - j_le.T).norm() / j_le.norm())
    assert asym_mmse <= 1e-6, f"MMSE Jacobian asymmetry {asym_mmse:.2e}"
    assert asym_le > 1e-2, f"LE-MMSE Jacobian asymmetry only {asym_le:.2e}"


# --------------------------------------------------------------------------------------------
# blocking does not change results


# The LE-MMSE's pre-inverse paths (5 s each) run in the slow tier; the fast tier keeps its denoising case.
BLOCKING_CASES = [pytest.param(path, estimator, id=f"{path_id(path)}-{estimator}",
                               marks=pytest.mark.slow if estimator == "lemmse" and path[1] != "identity" else ())
                  for estimator in ("lemmse", "mmse", "emmse")
                  for path in (("denoising", "identity"), ("inpainting", "pinv"), ("deconvolution", "tikhonov"))]


@pytest.mark.parametrize("path, estimator", BLOCKING_CASES)
@settings(max_examples=10)
@given(key_block=st.integers(1, 2000), query_block=st.integers(1, 300),
       max_memory=st.sampled_from([1, 10_000, 200_000, 2**30]), split=st.integers(1, 3))
def test_blocking_and_batching_do_not_change_results(colour, noise, path, estimator, key_block, query_block,
                                                     max_memory, split):
    """Results do not depend on key_block, query_block, max_memory, or on how the measurements
    are split across calls. float32 output: blocks change only the order of the online
    softmax's rescalings and sums (a few float32 roundings of values ≤ 1), so ≤ 2e-6."""
    task, pre = path
    train, x = colour
    y = measure(task, x, 0.1, noise).to(torch.float32)
    kw = dict(sigma=torch.tensor([0.05, 0.1, 0.2, 0.4]), patch=3, dtype=torch.float32)
    ref = run(train, y, task, pre, estimator, **kw)
    blocked = run(train, y, task, pre, estimator, key_block=key_block, query_block=query_block,
                  max_memory=max_memory, **kw)
    parts = []
    for lo, hi in ((0, split), (split, 4)):
        sub = dict(kw, sigma=kw["sigma"][lo:hi])
        parts.append(run(train, y[lo:hi], task, pre, estimator, key_block=key_block,
                         query_block=query_block, **sub))
    split_out = torch.cat(parts)
    assert float((blocked - ref).abs().max()) <= 2e-6
    assert float((split_out - ref).abs().max()) <= 2e-6
