"""Behaviour of :mod:`lemmse.operators`: every task × pre-inverse it accepts, checked against
MATH.md ("Tasks") with independent dense-matrix and direct-sum computations in float64."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lemmse.errors import LemmseInputError
from lemmse.operators import (
    PREINVERSES,
    TASKS,
    CircularConvolution,
    Deconvolution,
    PixelWeights,
    default_hole,
    gaussian_kernel,
    make_problem,
)

LAM = 0.05

#: (task, pre-inverse, lambda): every combination MATH.md allows.
CASES = [
    ("denoising", "identity", None),
    ("inpainting", "identity", None),
    ("inpainting", "adjoint", None),
    ("inpainting", "pinv", None),
    ("deconvolution", "identity", None),
    ("deconvolution", "adjoint", None),
    ("deconvolution", "pinv", None),
    ("deconvolution", "tikhonov", LAM),
]
CASE_IDS = [f"{t}-{b}" for t, b, _ in CASES]
ALLOWED = {t: {b for tt, b, _ in CASES if tt == t} for t in TASKS}


def _maps(problem, name, lam):
    """The five linear maps of one case, as ``label -> callable``."""
    B = problem.preinverse(name, lam)
    return {"A": problem.A, "A_adjoint": problem.A_adjoint, "A_dagger": problem.A_dagger,
            "B": B, "B_adjoint": B.adjoint}


def _dense(fn, channels: int, h: int, w: int) -> torch.Tensor:
    """Explicit float64 matrix of a linear map on ``(C, H, W)`` images (column j = fn(e_j))."""
    n = channels * h * w
    basis = torch.eye(n, dtype=torch.float64).reshape(n, channels, h, w)
    return fn(basis).reshape(n, n).T


def _inner(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


# --------------------------------------------------------------------------- shapes and dtypes


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("source", ["digits", "color"])
def test_shapes_and_dtype_preserved_on_real_batches(task, name, lam, source, digits16, color16):
    x = digits16[1500:1502] if source == "digits" else color16[1000:1003]
    problem = make_problem(task, (16, 16))
    for label, fn in _maps(problem, name, lam).items():
        for batch in (x, x.double()):
            out = fn(batch)
            assert out.shape == batch.shape, label
            assert out.dtype == batch.dtype, label
            assert torch.isfinite(out).all(), label


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_float32_output_is_the_float64_result_rounded(task, name, lam, color16):
    x = color16[1000:1004]
    for label, fn in _maps(make_problem(task, (16, 16)), name, lam).items():
        exact = fn(x.double())
        assert torch.equal(fn(x), exact.float()), label


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_same_map_on_every_channel(task, name, lam, color16):
    x = color16[1000:1002].double()
    for label, fn in _maps(make_problem(task, (16, 16)), name, lam).items():
        whole = fn(x)
        for c in range(3):
            torch.testing.assert_close(whole[:, c : c + 1], fn(x[:, c : c + 1]), rtol=0, atol=1e-15, msg=label)


def test_wrong_image_shape_is_rejected_with_the_shape():
    problem = make_problem("deconvolution", (16, 16))
    for bad in (torch.zeros(1, 1, 16, 15), torch.zeros(16, 16)):
        with pytest.raises(ValueError, match=re.escape(str(tuple(bad.shape)))):
            problem.A(bad)


# --------------------------------------------------------------------------- adjointness


@st.composite
def _grids(draw):
    h, w = draw(st.integers(3, 13)), draw(st.integers(3, 13))
    return {
        "h": h, "w": w,
        "channels": draw(st.integers(1, 3)),
        "batch": draw(st.integers(1, 3)),
        "hole": draw(st.integers(0, min(h, w))),
        "blur": draw(st.floats(0.3, 3.0)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@given(grid=_grids())
def test_adjointness_in_float64(grid, color16):
    """<M x, y> = <x, Mᵀ y> for A, every pre-inverse B, on random grids (x: crops of real photos)."""
    h, w, c, n = grid["h"], grid["w"], grid["channels"], grid["batch"]
    gen = torch.Generator().manual_seed(grid["seed"])
    start = torch.randint(0, 1000 - n, (1,), generator=gen).item()
    x = color16[start : start + n, :c, :h, :w].double()
    y = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    for task, name, lam in CASES:
        kwargs = {"inpainting": {"hole": grid["hole"]}, "deconvolution": {"blur_std": grid["blur"]}}.get(task, {})
        problem = make_problem(task, (h, w), **kwargs)
        B = problem.preinverse(name, lam)
        for label, fwd, adj in (("A", problem.A, problem.A_adjoint), ("B", B, B.adjoint)):
            lhs, rhs = _inner(fwd(x), y), _inner(x, adj(y))
            scale = float(fwd(x).norm() * y.norm() + x.norm() * adj(y).norm()) + 1e-300
            assert abs(lhs - rhs) <= 1e-12 * scale, (task, name, label, lhs, rhs)


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_adjoint_is_the_dense_transpose(task, name, lam):
    h, w, c = 6, 7, 2
    problem = make_problem(task, (h, w), **({"hole": 3} if task == "inpainting" else {}))
    B = problem.preinverse(name, lam)
    for fwd, adj in ((problem.A, problem.A_adjoint), (B, B.adjoint)):
        dense = _dense(fwd, c, h, w)
        torch.testing.assert_close(_dense(adj, c, h, w), dense.T, rtol=0, atol=1e-14 * float(dense.abs().max()))
    torch.testing.assert_close(B.dense_matrix(c), _dense(B, c, h, w), rtol=0, atol=0)


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_noise_gain_is_the_mean_variance_of_B_applied_to_white_noise(task, name, lam):
    """κ = ‖B‖_F²/(HW): from the dense matrix, and as the empirical variance of B e over draws."""
    h, w = 6, 7
    problem = make_problem(task, (h, w), **({"hole": 3} if task == "inpainting" else {}))
    B = problem.preinverse(name, lam)
    dense = _dense(B, 1, h, w)
    kappa = float((dense**2).sum()) / (h * w)
    assert B.noise_gain() == pytest.approx(kappa, rel=1e-12)
    e = torch.randn(20000, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert float(B(e).var(dim=0).mean()) == pytest.approx(kappa, rel=0.03)


# --------------------------------------------------------------------------- pseudo-inverse


@pytest.mark.parametrize("task", TASKS)
def test_pinv_satisfies_a_adagger_a_equals_a_on_real_images(task, digits16, color16):
    problem = make_problem(task, (16, 16))
    for x in (digits16[1500:1508].double(), color16[1000:1004].double()):
        ax = problem.A(x)
        torch.testing.assert_close(problem.A(problem.A_dagger(ax)), ax, rtol=0, atol=1e-12)
        if "pinv" in ALLOWED[task]:  # A⁺ is the map preinverse("pinv") hands out
            assert torch.equal(problem.A_dagger(x), problem.preinverse("pinv")(x))


@pytest.mark.parametrize(
    ("task", "kwargs", "rcond"),
    [("denoising", {}, 1e-6), ("inpainting", {"hole": 3}, 1e-6), ("deconvolution", {}, 1e-6),
     ("deconvolution", {"blur_std": 2.0}, 1e-6)],
    ids=["denoising", "inpainting", "deconvolution", "deconvolution-std2"],
)
def test_pinv_is_the_moore_penrose_inverse(task, kwargs, rcond):
    h, w = 8, 8
    problem = make_problem(task, (h, w), **kwargs)
    A = _dense(problem.A, 1, h, w)
    P = _dense(problem.A_dagger, 1, h, w)
    expected = torch.from_numpy(np.linalg.pinv(A.numpy(), rcond=rcond))
    torch.testing.assert_close(P, expected, rtol=0, atol=1e-8 * float(expected.abs().max()))
    _assert_penrose(A, P)


def test_truncated_pinv_drops_small_singular_values():
    """With ε = 1e-3 the 16×16 Gaussian blur has singular values below ε·max: truncated SVD."""
    eps = 1e-3
    problem = Deconvolution((16, 16), blur_std=1.0, pinv_eps=eps)
    ratio = (problem.spectrum.abs() / problem.spectrum.abs().max()).flatten()
    assert int((ratio <= eps).sum()) > 0
    assert float((ratio / eps - 1).abs().min()) > 0.05  # no singular value sits on the threshold
    A = _dense(problem.A, 1, 16, 16)
    P = _dense(problem.A_dagger, 1, 16, 16)
    expected = torch.from_numpy(np.linalg.pinv(A.numpy(), rcond=eps))
    torch.testing.assert_close(P, expected, rtol=0, atol=1e-9 * float(expected.abs().max()))
    assert torch.linalg.matrix_rank(P).item() == int((ratio > eps).sum())
    _assert_penrose(A, P, tol_aaa=eps)


def _assert_penrose(A: torch.Tensor, P: torch.Tensor, tol_aaa: float = 1e-10) -> None:
    """The four Penrose conditions (A P A = A up to the dropped singular values)."""
    scale_a, scale_p = float(A.abs().max()), float(P.abs().max())
    assert float((A @ P @ A - A).abs().max()) <= tol_aaa * scale_a
    assert float((P @ A @ P - P).abs().max()) <= 1e-10 * scale_p
    assert float((A @ P - (A @ P).T).abs().max()) <= 1e-10
    assert float((P @ A - (P @ A).T).abs().max()) <= 1e-10


# --------------------------------------------------------------------------- Tikhonov


@pytest.mark.parametrize("lam", [1e-4, 0.05, 3.0])
def test_tikhonov_spectrum_formula(lam):
    problem = make_problem("deconvolution", (16, 16))
    a = problem.spectrum
    B = problem.preinverse("tikhonov", lam)
    assert isinstance(B, CircularConvolution)
    torch.testing.assert_close(B.spectrum, a.conj() / (a.abs() ** 2 + lam), rtol=1e-14, atol=0)
    # measured on the impulse response, independently of the stored spectrum
    delta = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    delta[0, 0, 0, 0] = 1.0
    response = torch.fft.fft2(B(delta)[0, 0])
    torch.testing.assert_close(response, a.conj() / (a.abs() ** 2 + lam), rtol=0, atol=1e-12)


def test_tikhonov_is_the_regularised_normal_equations():
    h, w, lam = 8, 8, 0.05
    problem = make_problem("deconvolution", (h, w))
    A = _dense(problem.A, 1, h, w)
    expected = torch.linalg.solve(A.T @ A + lam * torch.eye(h * w, dtype=torch.float64), A.T)
    torch.testing.assert_close(_dense(problem.preinverse("tikhonov", lam), 1, h, w), expected, rtol=0, atol=1e-10)


def test_tikhonov_tends_to_pinv_as_lambda_vanishes(digits16):
    problem = make_problem("deconvolution", (16, 16))
    y = problem.A(digits16[1500:1504].double())
    torch.testing.assert_close(problem.preinverse("tikhonov", 1e-14)(y), problem.A_dagger(y), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- Gaussian kernel


def _kernel_by_formula(h: int, w: int, std: float) -> np.ndarray:
    """MATH.md: g(d) ∝ exp(-‖d‖²/2s²), d ∈ [-H//2, H-H//2)×[-W//2, W-W//2), stored at d mod (H, W)."""
    g = np.zeros((h, w))
    for dy in range(-(h // 2), h - h // 2):
        for dx in range(-(w // 2), w - w // 2):
            g[dy % h, dx % w] = math.exp(-(dy * dy + dx * dx) / (2 * std * std))
    return g / g.sum()


@pytest.mark.parametrize(("hw", "std"), [((16, 16), 1.0), ((32, 32), 1.0), ((7, 9), 0.7), ((8, 5), 2.5)])
def test_gaussian_kernel_matches_formula(hw, std):
    h, w = hw
    k = gaussian_kernel(hw, std)
    assert k.shape == hw and k.dtype == torch.float64
    assert abs(float(k.sum()) - 1.0) < 1e-14
    np.testing.assert_allclose(k.numpy(), _kernel_by_formula(h, w, std), rtol=1e-13, atol=0)
    # circular symmetry g(d) = g(-d)
    flipped = torch.roll(torch.flip(k, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
    torch.testing.assert_close(k, flipped, rtol=0, atol=1e-18)
    assert int(k.argmax()) == 0


def test_gaussian_kernel_values_at_offsets_16x16():
    k = gaussian_kernel((16, 16), 1.0)
    z = sum(math.exp(-(dy * dy + dx * dx) / 2) for dy in range(-8, 8) for dx in range(-8, 8))
    for (dy, dx) in [(0, 0), (1, 0), (0, -1), (2, 3), (-3, -2), (-8, -8), (-8, 7)]:
        assert float(k[dy % 16, dx % 16]) == pytest.approx(math.exp(-(dy * dy + dx * dx) / 2) / z, rel=1e-13)
    torch.testing.assert_close(k, k.T, rtol=0, atol=0)  # isotropic on a square grid


def test_deconvolution_is_the_direct_circular_sum(color16):
    """A x = Σ_d g(d) T_d x, computed with rolls, on real colour tiles."""
    x = color16[1000:1003].double()
    problem = make_problem("deconvolution", (16, 16), blur_std=1.3)
    g = _kernel_by_formula(16, 16, 1.3)
    direct = sum(g[i, j] * torch.roll(x, shifts=(i, j), dims=(-2, -1)) for i in range(16) for j in range(16))
    torch.testing.assert_close(problem.A(x), direct, rtol=0, atol=1e-14)
    # a blur preserves constants and the mean of every channel
    torch.testing.assert_close(problem.A(torch.full_like(x, 0.3)), torch.full_like(x, 0.3), rtol=0, atol=1e-15)
    torch.testing.assert_close(problem.A(x).mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- inpainting


@pytest.mark.parametrize(
    ("hw", "hole", "rows", "cols"),
    [((16, 16), 7, (5, 12), (5, 12)), ((32, 32), 15, (9, 24), (9, 24)), ((15, 17), 4, (5, 9), (6, 10)),
     ((16, 16), 0, (8, 8), (8, 8)), ((16, 16), 16, (0, 16), (0, 16)), ((9, 9), 1, (4, 5), (4, 5))],
)
def test_inpainting_hole_location(hw, hole, rows, cols):
    problem = make_problem("inpainting", hw, hole=hole)
    expected = torch.ones(hw, dtype=torch.float64)
    expected[rows[0] : rows[1], cols[0] : cols[1]] = 0
    assert torch.equal(problem.mask, expected)
    assert int((problem.mask == 0).sum()) == hole * hole


def test_default_hole_is_the_papers_scaled():
    assert default_hole((32, 32)) == 15
    assert default_hole((16, 16)) == 7
    assert torch.equal(make_problem("inpainting", (16, 16)).mask, make_problem("inpainting", (16, 16), hole=7).mask)


def test_inpainting_zeroes_the_hole_and_keeps_the_rest_exactly(digits16):
    x = digits16[1500:1504]
    y = make_problem("inpainting", (16, 16), hole=7).A(x)
    assert torch.equal(y[..., 5:12, 5:12], torch.zeros_like(y[..., 5:12, 5:12]))
    keep = torch.ones(16, 16, dtype=torch.bool)
    keep[5:12, 5:12] = False
    assert torch.equal(y[..., keep], x[..., keep])


def test_measure_adds_scaled_noise_everywhere(digits16, test_noise):
    problem = make_problem("inpainting", (16, 16))
    x, noise = digits16[1500:1504], test_noise[:4, :1]
    sigma = torch.tensor([0.01, 0.05, 0.2, 0.8])
    y = problem.measure(x, sigma, noise)
    torch.testing.assert_close(y, problem.A(x) + sigma.reshape(-1, 1, 1, 1) * noise, rtol=0, atol=0)
    assert bool((y[..., 5:12, 5:12] != 0).all())  # the hole is noisy too, never clipped


# --------------------------------------------------------------------------- LE-MMSE case


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_le_mmse_case(task, name, lam):
    problem = make_problem(task, (16, 16))
    B = problem.preinverse(name, lam)
    expected = 2 if (task == "inpainting" and name != "identity") else 1
    assert problem.le_mmse_case(B) == expected
    assert isinstance(B, PixelWeights if expected == 2 else CircularConvolution)


def test_le_mmse_case_general_for_non_binary_weights():
    problem = make_problem("inpainting", (8, 8))
    assert problem.le_mmse_case(PixelWeights(torch.full((8, 8), 0.5, dtype=torch.float64))) == 3
    assert problem.le_mmse_case(PixelWeights(torch.ones(8, 8, dtype=torch.float64))) == 2


# --------------------------------------------------------------------------- devices and reuse


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_to_moves_every_buffer(task, name, lam):
    """Masks and spectra are registered buffers: ``.to('meta')`` moves all of them."""
    problem = make_problem(task, (16, 16))
    assert len(list(problem.buffers())) >= 1
    problem = problem.to("meta")
    assert all(buf.device.type == "meta" for buf in problem.buffers())
    B = problem.preinverse(name, lam)
    assert len(list(B.buffers())) >= 1
    assert all(buf.device.type == "meta" for buf in B.buffers())


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_outputs_on_device_match_cpu(task, name, lam, device, color16):
    x = color16[1000:1003].double()
    reference = {k: fn(x) for k, fn in _maps(make_problem(task, (16, 16)), name, lam).items()}
    problem = make_problem(task, (16, 16)).to(device)
    maps = _maps(problem, name, lam)
    assert all(buf.device.type == device.type for buf in maps["B"].buffers())
    for label, fn in maps.items():
        out = fn(x.to(device))
        assert out.device.type == device.type, label
        torch.testing.assert_close(out.cpu(), reference[label], rtol=0, atol=1e-12, msg=label)


@pytest.mark.parametrize(("task", "name", "lam"), CASES, ids=CASE_IDS)
def test_reused_operator_matches_a_fresh_one(task, name, lam, digits16, color16):
    """One object used for several pre-inverses, channel counts and sizes of batch stays unchanged."""
    gray, colour = digits16[1500:1506], color16[1000:1003]
    reused = make_problem(task, (16, 16))
    for _ in range(2):
        for other in sorted(ALLOWED[task]):
            B = reused.preinverse(other, LAM if other == "tikhonov" else None)
            B(colour), B.adjoint(gray), reused.A_dagger(colour), reused.A(gray[:1])
    for x in (gray, colour):
        for label, fn in _maps(reused, name, lam).items():
            fresh = _maps(make_problem(task, (16, 16)), name, lam)[label]
            assert torch.equal(fn(x), fresh(x)), label


# --------------------------------------------------------------------------- bad input


def _raises_naming(value_text: str):
    return pytest.raises(LemmseInputError, match=re.escape(value_text))


@pytest.mark.parametrize("task", ["denoise", "", "Inpainting"])
def test_unknown_task(task):
    with _raises_naming(repr(task)):
        make_problem(task, (16, 16))


@pytest.mark.parametrize("task", TASKS)
def test_unknown_preinverse(task):
    with _raises_naming("'inverse'"):
        make_problem(task, (16, 16)).preinverse("inverse")


@pytest.mark.parametrize(("task", "name"), [(t, b) for t in TASKS for b in PREINVERSES if b not in ALLOWED[t]])
def test_preinverse_not_fitting_task(task, name):
    lam = LAM if name == "tikhonov" else None
    with pytest.raises(LemmseInputError, match=re.escape(repr(name))) as info:
        make_problem(task, (16, 16)).preinverse(name, lam)
    assert task in str(info.value)


@pytest.mark.parametrize("lam", [None, 0.0, -0.1, float("nan"), float("inf")])
def test_tikhonov_needs_a_positive_finite_lambda(lam):
    with _raises_naming(f"lam={lam!r}"):
        make_problem("deconvolution", (16, 16)).preinverse("tikhonov", lam)


@pytest.mark.parametrize(("task", "name"), [("denoising", "identity"), ("deconvolution", "identity"),
                                            ("deconvolution", "pinv"), ("inpainting", "adjoint")])
def test_lambda_rejected_for_preinverses_without_one(task, name):
    with _raises_naming("lam=0.1"):
        make_problem(task, (16, 16)).preinverse(name, 0.1)


@pytest.mark.parametrize(("hw", "hole"), [((16, 16), 17), ((15, 20), 16), ((16, 16), -1), ((16, 16), 3.5)])
def test_bad_hole(hw, hole):
    with _raises_naming(repr(hole)):
        make_problem("inpainting", hw, hole=hole)


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan"), float("inf"), "1.0"])
def test_bad_blur_std(std):
    with _raises_naming(repr(std)):
        make_problem("deconvolution", (16, 16), blur_std=std)


@pytest.mark.parametrize(("task", "kwargs", "text"), [
    ("denoising", {"hole": 7}, "hole=7"),
    ("deconvolution", {"hole": 7}, "hole=7"),
    ("denoising", {"blur_std": 1.0}, "blur_std=1.0"),
    ("inpainting", {"blur_std": 2.0}, "blur_std=2.0"),
])
def test_parameter_for_another_task(task, kwargs, text):
    with _raises_naming(text):
        make_problem(task, (16, 16), **kwargs)


def test_input_error_is_a_value_error():
    assert issubclass(LemmseInputError, ValueError)
