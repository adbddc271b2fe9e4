"""Every bad input to :func:`lemmse.estimators.estimate` raises ``LemmseInputError`` naming the
offending value, and does so before any heavy work.

"Before any heavy work" is checked without a clock: every estimator streams the training set
through ``training_blocks``, which the failing calls find replaced by a tripwire (a call to it
fails the test), on a training set of 20 000 images; a contrasting valid call on a small slice
shows the same arguments otherwise work.
"""
from __future__ import annotations

import importlib
import math
import pkgutil

import pytest
import torch

from lemmse.errors import LemmseInputError
from lemmse.estimators import estimate

SIZE = 16


@pytest.fixture
def tripwire(monkeypatch):
    """Replace ``training_blocks`` in every estimator module by a function that fails the test."""
    import lemmse.estimators as package

    def streamed(*args, **kwargs):
        raise AssertionError("the training set was streamed before the bad input was refused")

    patched = 0
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "training_blocks"):
            monkeypatch.setattr(module, "training_blocks", streamed)
            patched += 1
    assert patched, "no estimator module streams through training_blocks any more: update the tripwire"


@pytest.fixture(scope="module")
def big_train() -> torch.Tensor:
    """20 000 random 16×16 grey images in [0, 1] (reproducible)."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(20_000, 1, SIZE, SIZE, generator=gen)


@pytest.fixture(scope="module")
def good_y() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, 1, SIZE, SIZE, generator=gen)


BASE = dict(task="denoising", estimator="lemmse", sigma=0.1, patch=5)


def _with_nan(t: torch.Tensor, value: float, index=(0, 0, 3, 4)) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


# (id, change to the arguments, substrings the message must contain)
# A change is a dict of keyword overrides; the special keys "train" / "y" are callables that
# map the good array to a bad one.
CASES = [
    ("patch-even", dict(patch=4), ["patch=4"]),
    ("patch-zero", dict(patch=0), ["patch=0"]),
    ("patch-negative", dict(patch=-3), ["patch=-3"]),
    ("patch-larger-than-image", dict(patch=17), ["patch=17", "16x16"]),
    ("patch-missing", dict(patch=None), ["patch"]),
    ("patch-float", dict(patch=3.0), ["patch=3.0"]),
    ("y-size-mismatch", dict(y=lambda y: y[:, :, :8, :8]), ["(1, 8, 8)", "(1, 16, 16)"]),
    ("y-channel-mismatch", dict(y=lambda y: y.expand(2, 3, SIZE, SIZE)), ["(3, 16, 16)"]),
    ("y-3d", dict(y=lambda y: y[:, 0]), ["y", "(2, 16, 16)"]),
    ("y-integer", dict(y=lambda y: (y * 255).to(torch.int64)), ["y", "int64"]),
    ("sigma-zero", dict(sigma=0.0), ["sigma=0.0"]),
    ("sigma-negative", dict(sigma=-0.5), ["sigma=-0.5"]),
    ("sigma-nan", dict(sigma=math.nan), ["sigma=nan"]),
    ("sigma-inf", dict(sigma=math.inf), ["sigma=inf"]),
    ("sigma-vector-zero", dict(sigma=torch.tensor([0.1, 0.0])), ["sigma=0.0"]),
    ("sigma-vector-negative", dict(sigma=torch.tensor([-0.2, 0.1])), ["sigma=-0.2"]),
    ("sigma-vector-nan", dict(sigma=torch.tensor([0.1, math.nan])), ["sigma=nan"]),
    ("sigma-vector-inf", dict(sigma=torch.tensor([math.inf, 0.1])), ["sigma=inf"]),
    ("sigma-vector-wrong-length", dict(sigma=torch.tensor([0.1, 0.1, 0.1])), ["3 values", "2 measurements"]),
    ("train-nan", dict(train=lambda t: _with_nan(t, math.nan, (12_345, 0, 3, 4))),
     ["training set", "NaN", "(12345, 0, 3, 4)"]),
    ("train-inf", dict(train=lambda t: _with_nan(t, -math.inf, (19_999, 0, 15, 15))),
     ["training set", "inf", "(19999, 0, 15, 15)"]),
    ("y-nan", dict(y=lambda y: _with_nan(y, math.nan, (1, 0, 2, 2))), ["y contains NaN", "(1, 0, 2, 2)"]),
    ("y-inf", dict(y=lambda y: _with_nan(y, math.inf)), ["y contains NaN or inf", "(0, 0, 3, 4)"]),
    ("train-empty", dict(train=lambda t: t[:0]), ["training set is empty"]),
    ("y-empty", dict(y=lambda y: y[:0]), ["y holds no measurement"]),
    ("unknown-task", dict(task="denoise"), ["'denoise'"]),
    ("unknown-preinverse", dict(preinverse="inverse"), ["'inverse'"]),
    ("unknown-estimator", dict(estimator="mlp"), ["'mlp'"]),
    ("tikhonov-without-lam", dict(task="deconvolution", preinverse="tikhonov"), ["lam=None"]),
    ("tikhonov-lam-zero", dict(task="deconvolution", preinverse="tikhonov", lam=0.0), ["lam=0.0"]),
    ("tikhonov-lam-negative", dict(task="deconvolution", preinverse="tikhonov", lam=-1.0), ["lam=-1.0"]),
    ("tikhonov-lam-nan", dict(task="deconvolution", preinverse="tikhonov", lam=math.nan), ["lam=nan"]),
    ("lam-without-tikhonov", dict(task="deconvolution", preinverse="pinv", lam=0.1), ["lam=0.1"]),
    ("denoising-pinv", dict(preinverse="pinv"), ["'pinv'", "'denoising'"]),
    ("denoising-adjoint", dict(preinverse="adjoint"), ["'adjoint'", "'denoising'"]),
    ("inpainting-tikhonov", dict(task="inpainting", preinverse="tikhonov", lam=0.1), ["'tikhonov'", "'inpainting'"]),
    ("hole-with-denoising", dict(hole=3), ["hole=3"]),
    ("blur-with-inpainting", dict(task="inpainting", blur_std=1.0), ["blur_std=1.0"]),
    ("hole-too-big", dict(task="inpainting", hole=17), ["17"]),
    ("blur-std-zero", dict(task="deconvolution", blur_std=0.0), ["0.0"]),
    ("diagnostics-with-mmse", dict(estimator="mmse", patch=None, diagnostics=True), ["'mmse'"]),
    ("diagnostics-with-emmse", dict(estimator="emmse", patch=None, diagnostics=True), ["'emmse'"]),
    ("diagnostics-with-smoothed", dict(estimator="smoothed", diagnostics=True), ["'smoothed'"]),
    ("smoothing-negative", dict(estimator="smoothed", smoothing=-0.1), ["smoothing=-0.1"]),
    ("samples-zero", dict(estimator="smoothed", samples=0), ["samples=0"]),
    ("dtype-float16", dict(dtype=torch.float16), ["float16"]),
    ("dtype-int64", dict(dtype=torch.int64), ["int64"]),
    ("key-block-zero", dict(key_block=0), ["key_block=0"]),
    ("max-memory-negative", dict(max_memory=-5), ["max_memory=-5"]),
    ("unknown-device", dict(device="tpu:9"), ["tpu:9"]),
]


@pytest.mark.parametrize("change,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_fast_with_named_value(big_train, good_y, change, expected, tripwire):
    """The call raises LemmseInputError (a ValueError), its message holds every expected
    substring (the offending value or argument), and no training image was streamed before."""
    kwargs = dict(BASE)
    train, y = big_train, good_y
    for key, value in change.items():
        if key == "train":
            train = value(train)
        elif key == "y":
            y = value(y)
        else:
            kwargs[key] = value
    with pytest.raises(LemmseInputError) as info:
        estimate(train, y, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    for piece in expected:
        assert piece in message, f"{piece!r} not in message {message!r}"


def test_valid_arguments_work_on_small_slice(big_train, good_y):
    """Contrast: the base arguments are valid (so each failure above comes from its one change)."""
    out = estimate(big_train[:10], good_y, **BASE).xhat
    assert out.shape == good_y.shape and bool(torch.isfinite(out).all())


def test_cuda_unavailable_is_an_input_error(big_train, good_y):
    """Asking for CUDA where there is none is reported as an input error naming the device."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(LemmseInputError, match="cuda"):
        estimate(big_train, good_y, device="cuda", **BASE)


def test_tripwire_fires_on_a_valid_call(big_train, good_y, tripwire):
    """The tripwire is live: a valid call streams the training set and trips it."""
    with pytest.raises(AssertionError, match="streamed"):
        estimate(big_train[:50], good_y, **BASE)
