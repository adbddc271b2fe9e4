"""Every architecture × every P: exact P×P receptive field, circular equivariance, σ conditioning."""
from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from lemmse.errors import LemmseInputError
from lemmse.models import (ARCHITECTURES, SUPPORTED_PATCHES, PixelGroupNorm, build_model, circular_conv,
                           count_parameters, kernel_plan)

#: Small widths: the whole file runs in seconds on one CPU core.
TINY = {"unet": {"channels": (8, 16), "norm_groups": 2},
        "resnet": {"width": 16},
        "patchmlp": {"width": 16, "hidden": 16, "blocks": 2, "emb_dim": 8}}
CASES = [(arch, patch) for arch in ARCHITECTURES for patch in SUPPORTED_PATCHES]


def _tiny(arch: str, patch: int, channels: int = 2, dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(patch)
    model = build_model(arch, channels, patch, TINY[arch]).to(dtype)
    if arch == "resnet":  # non-trivial running statistics, so eval-mode BatchNorm is not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _window(size: int, centre: int, patch: int) -> set[int]:
    return {(centre + d) % size for d in range(-(patch // 2), patch // 2 + 1)}


@pytest.mark.parametrize("arch,patch", CASES)
def test_receptive_field_is_exactly_the_circular_window(arch, patch):
    _assert_receptive_field(_tiny(arch, patch), f"{arch} P={patch}", patch, channels=2)


@pytest.mark.parametrize("patch", [5, 9])
def test_the_small_unet_on_grey_images_has_the_exact_receptive_field(patch):
    """The default widths on one channel: conv_out runs by taps (16 channels in, 1 out)."""
    torch.manual_seed(patch)
    model = build_model("unet", 1, patch).double().eval()
    assert model.conv_out.by_taps
    _assert_receptive_field(model, f"small unet P={patch}", patch, channels=1)


def _assert_receptive_field(model, name: str, patch: int, channels: int) -> None:
    h, w = patch + 3, patch + 4  # window smaller than the image: "outside" is never empty
    v = torch.rand(1, channels, h, w, dtype=torch.float64, requires_grad=True)
    i, j = 1, w - 2  # near two borders: the window wraps around
    out = model(v, torch.tensor([0.3], dtype=torch.float64))
    grad, = torch.autograd.grad(out[0, :, i, j].sum(), v)
    support = grad[0].abs().sum(0) != 0
    rows, cols = _window(h, i, patch), _window(w, j, patch)
    expected = torch.zeros(h, w, dtype=torch.bool)
    for r in rows:
        for c in cols:
            expected[r, c] = True
    assert torch.equal(support, expected), (
        f"{name}: gradient support\n{support.int()}\nexpected\n{expected.int()}")


@pytest.mark.parametrize("arch,patch", CASES)
def test_circular_shift_equivariance(arch, patch):
    model = _tiny(arch, patch, dtype=torch.float32)
    v = torch.rand(2, 2, patch + 2, patch + 5)
    sigma = torch.tensor([0.1, 0.7])
    with torch.no_grad():
        out = model(v, sigma)
        for shift in [(1, 0), (0, 3), (-2, 5)]:
            shifted = model(torch.roll(v, shift, dims=(2, 3)), sigma)
            torch.testing.assert_close(shifted, torch.roll(out, shift, dims=(2, 3)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_output_depends_on_sigma_and_batch_items_are_independent(arch):
    model = _tiny(arch, 5, channels=3, dtype=torch.float32)
    v = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        a = model(v, torch.tensor([0.1, 0.1, 0.1]))
        b = model(v, torch.tensor([0.1, 0.9, 0.1]))
        assert a.shape == v.shape
        assert not torch.allclose(a[1], b[1])
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(model(v, 0.1), a)  # a scalar σ broadcasts


def test_unet_kernel_plan_sums_to_patch():
    for patch in range(1, 40, 2):
        for levels, lpb in [(1, 1), (2, 1), (3, 2), (4, 1)]:
            plan = kernel_plan(patch, levels, lpb)
            assert 1 + sum(k - 1 for k in plan.values()) == patch
            assert all(k % 2 == 1 for k in plan.values())


def test_pixel_group_norm_pools_no_pixels():
    norm = PixelGroupNorm(2, 4)
    h = torch.randn(1, 4, 5, 5, requires_grad=True)
    grad, = torch.autograd.grad(norm(h)[0, 0, 2, 3], h)
    assert set(map(tuple, grad[0].abs().sum(0).nonzero().tolist())) == {(2, 3)}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_paper_settings_have_about_four_million_parameters(arch):
    for patch in (5, 7, 9, 11, 17):
        n = count_parameters(build_model(arch, 3, patch, "paper"))
        assert 3.5e6 <= n <= 5.1e6, f"{arch} P={patch}: {n} parameters"


@pytest.mark.parametrize("bad", [4, 1, 0, -3, 2.0, True])
def test_bad_patch_is_refused_naming_it(bad):
    with pytest.raises(LemmseInputError, match=str(bad)):
        build_model("unet", 1, bad)


def test_unknown_architecture_and_option_are_refused():
    with pytest.raises(LemmseInputError, match="'vit'"):
        build_model("vit", 1, 5)
    with pytest.raises(LemmseInputError, match="'depth'"):
        build_model("resnet", 1, 5, {"depth": 3})
    with pytest.raises(LemmseInputError, match="norm_groups"):
        build_model("unet", 1, 5, {"channels": (6, 12), "norm_groups": 4})


@pytest.mark.parametrize("groups,channels", [(1, 4), (1, 8), (2, 4), (4, 16)])
def test_pixel_group_norm_matches_its_formula(groups, channels):
    """The fused channels-last kernel computes the docstring's per-pixel group statistics (float64)."""
    torch.manual_seed(groups * channels)
    norm = PixelGroupNorm(groups, channels).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    h = 3.0 * torch.randn(2, channels, 5, 6, dtype=torch.float64) + 1.0
    g = h.reshape(2, groups, channels // groups, 5, 6)
    mean = g.mean(dim=2, keepdim=True)
    var = ((g - mean) ** 2).mean(dim=2, keepdim=True)
    expected = ((g - mean) / torch.sqrt(var + norm.eps)).reshape(h.shape)
    expected = expected * norm.weight[:, None, None] + norm.bias[:, None, None]
    torch.testing.assert_close(norm(h), expected, atol=1e-12, rtol=1e-12)


def test_preconditioning_scales_the_input_and_skips_it_by_the_noise_it_expects():
    """f(v, σ) = c_skip v + net(c_in v, σ): c_in = (s² + κσ²)^-1/2, c_skip = s²/(s² + κσ²), per sample."""
    from lemmse.models.preconditioning import SIGNAL_SCALE, Preconditioned

    net = _tiny("resnet", 5, channels=1, dtype=torch.float64)
    wrapped = Preconditioned(net, 400.0).double().eval()
    assert wrapped.patch == 5
    v = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.05, 1.0], dtype=torch.float64)
    total = SIGNAL_SCALE**2 + 400.0 * sigma**2
    c_in, c_skip = (1.0 / torch.sqrt(total))[:, None, None, None], (SIGNAL_SCALE**2 / total)[:, None, None, None]
    with torch.no_grad():
        torch.testing.assert_close(wrapped(v, sigma), c_skip * v + net(c_in * v, sigma))
        # σ = 0: the clean input passes through unchanged, plus the network's correction
        torch.testing.assert_close(wrapped(v[:1], 0.0) - net(v[:1] / SIGNAL_SCALE, 0.0), v[:1])
    with pytest.raises(ValueError, match="noise_gain"):
        Preconditioned(net, 0.0)


@settings(max_examples=40, deadline=None)
@example(cin=16, cout=1, kernel=3, h=5, w=7, channels_last=True, bias=True)  # the small UNet's conv_out
@example(cin=20, cout=2, kernel=3, h=6, w=6, channels_last=False, bias=False)
@example(cin=8, cout=1, kernel=3, h=5, w=5, channels_last=False, bias=True)
@given(cin=st.integers(1, 20), cout=st.integers(1, 3), kernel=st.sampled_from([1, 3, 5]),
       h=st.integers(5, 9), w=st.integers(5, 9), channels_last=st.booleans(), bias=st.booleans())
def test_circular_conv_equals_torchs_circular_conv_with_its_gradients(cin, cout, kernel, h, w, channels_last, bias):
    """Both paths of CircularConv2d (by taps when C_out·k² <= C_in, else Conv2d's) against
    ``torch.nn.Conv2d(padding_mode="circular")`` with the same parameters, in float64."""
    torch.manual_seed(cin * 100 + cout * 10 + kernel)
    conv = circular_conv(cin, cout, kernel, bias=bias).double()
    reference = torch.nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias,
                                padding_mode="circular" if kernel > 1 else "zeros").double()
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(2, cin, h, w, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(2, cout, h, w, dtype=torch.float64)
    results = []
    for module in (conv, reference):
        xi = x.clone().requires_grad_()
        out = module(xi)
        grads = torch.autograd.grad(out, [xi, *module.parameters()], grad_out)
        results.append((out, *grads))
    for mine, theirs in zip(*results):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_the_small_unets_output_convolution_runs_by_taps():
    """conv_out of the default UNet on grey images (16 channels in, 1 out, 3×3) takes the taps
    path; its 1-channel conv_in and its 1×1 convolutions take Conv2d's."""
    model = build_model("unet", 1, 5)
    assert model.conv_out.kernel_size == (3, 3) and model.conv_out.by_taps
    assert not model.conv_in.by_taps
    assert not any(m.by_taps for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))
