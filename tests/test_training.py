"""Training: loss drops and the network approaches the LE-MMSE; exact resume; bad input; divergence."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lemmse.errors import LemmseInputError
from lemmse.estimators import estimate
from lemmse.models import ARCHITECTURES
from lemmse.training import (CHECKPOINT, OPTIONS, STATS, TrainConfig, TrainingDivergedError,
                             load_checkpoint, train)
from lemmse.training import loop as loop_module
from lemmse.training.sampling import SampleStream, _seed, _seeds

TINY = {"unet": {"channels": (8, 16), "norm_groups": 2}, "resnet": {"width": 8},
        "patchmlp": {"width": 16, "hidden": 16, "blocks": 1, "emb_dim": 8}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


#: 300 steps of each architecture on 300 digits: 6 s (ResNet) to 12 s (UNet) on one thread. The fast tier
#: keeps the ResNet; every architecture's forward, backward and resume are tested fast below.
LEARNING_SLOW = ("unet", "patchmlp")


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in LEARNING_SLOW else a
                                  for a in ARCHITECTURES])
def test_denoiser_loss_drops_and_output_approaches_the_lemmse(arch, digits16, tmp_path):
    train_x, test_x, sigma, patch = digits16[:300], digits16[1000:1016], 0.2, 5
    y = test_x + sigma * torch.randn(test_x.shape, generator=torch.Generator().manual_seed(1))
    options = {"channels": (8, 16), "norm_groups": 2} if arch == "unet" else {}  # keeps the UNet quick
    config = TrainConfig(arch=arch, patch=patch, model_options=options, sigma_min=sigma, sigma_max=sigma, steps=300, batch_size=16,
                         lr=2e-3, ema_start=100, ema_every=1, ema_decay=0.99, checkpoint_every=300, log_every=50)
    result = train(tmp_path, config, train_x)
    losses = [json.loads(line)["loss"] for line in (tmp_path / STATS).read_text().splitlines()]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0] and losses[-1] < sigma**2 / 4
    reference = estimate(train_x, y, task="denoising", estimator="lemmse", sigma=sigma, patch=patch).xhat
    with torch.no_grad():
        out = result.model(y, sigma)
    assert _psnr(out, reference) > _psnr(y, reference) + 6, (_psnr(out, reference), _psnr(y, reference))


def _tiny_config(arch: str = "resnet", **kw) -> TrainConfig:
    base = dict(arch=arch, patch=3, model_options=TINY.get(arch, {}), sigma_min=0.0, sigma_max=1.0, steps=12,
                batch_size=4, ema_start=3, ema_every=2, ema_decay=0.9, checkpoint_every=5, log_every=2, seed=7)
    return TrainConfig(**{**base, **kw})


def _images(n: int = 10, c: int = 2, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, c, size, size), dtype=np.float32)


def _assert_same_state(a: dict, b: dict) -> None:
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name]))
    assert a["step"] == b["step"]


def _stats(path) -> list[dict]:
    rows = [json.loads(line) for line in (path / STATS).read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_interrupted_and_resumed_run_ends_bitwise_equal(arch, tmp_path):
    images, config = _images(), _tiny_config(arch)
    train(tmp_path / "full", config, images)
    train(tmp_path / "cut", config, images, stop_after=8)  # "killed" after step 8; checkpoint at 5
    assert load_checkpoint(tmp_path / "cut")["step"] == 5
    result = train(tmp_path / "cut", config, images, resume=True)
    assert result.step == 12
    _assert_same_state(load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut"))
    assert _stats(tmp_path / "full") == _stats(tmp_path / "cut")


def test_checkpoint_is_one_plain_dict_and_options_come_first(tmp_path):
    images, config = _images(), _tiny_config("resnet")
    train(tmp_path, config, images, stop_after=0)  # nothing trained yet: the options are already there
    options = json.loads((tmp_path / OPTIONS).read_text())
    assert not (tmp_path / CHECKPOINT).exists()
    assert options["train_size"] == 10 and options["channels"] == 2 and options["image_size"] == [8, 8]
    assert options["model_options"] == {"width": 8}
    train(tmp_path, config, images, resume=True)  # no checkpoint yet: a fresh start
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert {"format", "config", "step", "model", "ema", "optimizer", "rng", "log_window"} <= set(state)
    assert state["config"] == options and state["step"] == 12


def test_ema_is_the_copy_then_the_decayed_average_of_the_live_weights(tmp_path, monkeypatch):
    """The returned network's weights are the EMA recomputed here from the live weights after every step:
    a copy up to ``ema_start``, then ``e ← d·e + (1-d)·p`` every ``ema_every`` steps; BatchNorm's running
    statistics are the live ones of the last step."""
    config = _tiny_config("resnet", steps=11, ema_start=3, ema_every=2, ema_decay=0.75, checkpoint_every=100)
    live = []
    original = loop_module._update_ema

    def recording(ema, model, step, cfg):
        original(ema, model, step, cfg)
        live.append(([p.detach().clone() for p in model.parameters], [b.clone() for b in model.buffers]))

    monkeypatch.setattr(loop_module, "_update_ema", recording)
    result = train(tmp_path, config, _images())
    assert len(live) == 11
    expected = [p.clone() for p in live[2][0]]  # step 3 = ema_start: a copy
    for step in range(4, 12):
        if step % 2 == 0:
            expected = [0.75 * e + 0.25 * p for e, p in zip(expected, live[step - 1][0])]
    for got, want in zip(result.model.parameters(), expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(got, p) for got, p in zip(result.model.parameters(), live[-1][0]))  # not a copy
    buffers = list(result.model.buffers())
    assert buffers and all(torch.equal(b, want) for b, want in zip(buffers, live[-1][1]))


def test_sample_stream_does_not_depend_on_batch_size():
    small = SampleStream(7, (1, 4, 4), 3, 0.0, 1.0, seed=3)
    large = SampleStream(7, (1, 4, 4), 6, 0.0, 1.0, seed=3)
    a = [torch.cat(parts) for parts in zip(small.batch(1), small.batch(2))]
    for x, y in zip(a, large.batch(1)):
        assert torch.equal(x, y)
    fixed = SampleStream(7, (1, 4, 4), 5, 0.3, 0.3, seed=3).batch(4)[1]
    assert torch.equal(fixed, torch.full((5,), 0.3))
    epoch = SampleStream(7, (1, 4, 4), 7, 0.0, 1.0, seed=3).batch(2)[0]
    assert sorted(epoch.tolist()) == list(range(7))


@settings(max_examples=60, deadline=None)
@given(seed=st.one_of(st.integers(0, 5), st.integers(0, 2**32 - 1), st.integers(2**32, 2**70)),
       tag=st.sampled_from([1, 2]), first=st.one_of(st.integers(0, 10**6), st.integers(2**32 - 40, 2**32 + 40)))
def test_vectorised_seeds_are_numpys_seed_sequence(seed, tag, first):
    """Every seed of a batch is bit for bit NumPy's ``SeedSequence([seed, tag, t])``, also where a key
    needs more than one 32-bit word (seed ≥ 2³², t crossing 2³²: the fallback)."""
    ts = np.arange(first, first + 33, dtype=np.uint64)
    assert _seeds((seed, tag), ts).tolist() == [_seed(seed, tag, int(t)) for t in ts]


@pytest.mark.parametrize("sampling", ["uniform", "log-uniform"])
def test_batch_is_the_per_sample_reference(sampling):
    """``batch(step)`` (seeds in one pass, one re-seeded generator, noise drawn into the batch) returns
    exactly ``sample(t)`` of each of its samples, across an epoch boundary too (N = 7, batch 5)."""
    stream = SampleStream(7, (1, 5, 4), 5, 0.01, 1.0, seed=11, sampling=sampling)
    reference = SampleStream(7, (1, 5, 4), 5, 0.01, 1.0, seed=11, sampling=sampling)
    for step in (1, 2, 3, 40):
        indices, sigma, noise = stream.batch(step)
        samples = [reference.sample(t) for t in range((step - 1) * 5, step * 5)]
        assert indices.tolist() == [s[0] for s in samples]
        assert torch.equal(sigma, torch.tensor([s[1] for s in samples], dtype=torch.float32))
        assert torch.equal(noise, torch.stack([s[2] for s in samples]))


def test_log_uniform_sigma_is_the_uniform_draw_mapped_to_a_log_scale():
    """Same u_t as the uniform stream, σ = σ_min (σ_max/σ_min)^u: half the draws fall below √(σ_min σ_max)."""
    uniform = SampleStream(7, (1, 4, 4), 4000, 0.0, 1.0, seed=5).batch(1)
    logu = SampleStream(7, (1, 4, 4), 4000, 0.01, 1.0, seed=5, sampling="log-uniform").batch(1)
    u = uniform[1].double()
    torch.testing.assert_close(logu[1].double(), 0.01 * 100.0**u, rtol=1e-6, atol=0)
    assert torch.equal(logu[0], uniform[0]) and torch.equal(logu[2], uniform[2])  # same images and noise
    assert abs(float((logu[1] < 0.1).double().mean()) - 0.5) < 0.03
    with pytest.raises(ValueError, match="sigma_min > 0"):
        SampleStream(7, (1, 4, 4), 4, 0.0, 1.0, seed=5, sampling="log-uniform")


def test_resume_refuses_another_config_and_fresh_run_refuses_to_overwrite(tmp_path):
    images = _images()
    train(tmp_path, _tiny_config("resnet", steps=5), images)
    with pytest.raises(LemmseInputError, match="lr: 0.001 -> 0.01"):
        train(tmp_path, _tiny_config("resnet", steps=5, lr=1e-2), images, resume=True)
    with pytest.raises(LemmseInputError, match="data_sha256"):
        train(tmp_path, _tiny_config("resnet", steps=5), images[:9], resume=True)
    with pytest.raises(LemmseInputError, match="already exists"):
        train(tmp_path, _tiny_config("resnet", steps=5), images)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    images, config = _images(), _tiny_config("resnet")
    calls = {"n": 0}
    forward = loop_module.MeasurementLoss.forward

    def poisoned(self, *args):
        calls["n"] += 1
        loss = forward(self, *args)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(loop_module.MeasurementLoss, "forward", poisoned)
    with pytest.raises(TrainingDivergedError, match="step 7"):
        train(tmp_path, config, images)
    before = (tmp_path / CHECKPOINT).read_bytes()
    assert load_checkpoint(tmp_path)["step"] == 5
    monkeypatch.setattr(loop_module.MeasurementLoss, "forward", forward)
    train(tmp_path, config, images, resume=True)
    assert (tmp_path / CHECKPOINT).read_bytes() != before


@pytest.mark.parametrize("change,match", [
    ({"patch": 4}, "P=4"), ({"patch": 9}, "P=9 is larger"), ({"arch": "vit"}, "'vit'"),
    ({"sigma_min": 0.5, "sigma_max": 0.2}, "sigma_min=0.5 > sigma_max=0.2"),
    ({"sigma_min": -0.1}, "sigma_min=-0.1"), ({"steps": 0}, "steps=0"),
    ({"preinverse": "pinv"}, "'pinv'"), ({"task": "deblur"}, "'deblur'"),
    ({"model_options": {"depth": 2}}, "'depth'"), ({"lr_min": 1.0}, "lr_min=1.0"),
])
def test_bad_config_fails_at_once_naming_the_value(change, match, tmp_path):
    with pytest.raises(LemmseInputError, match=match):
        train(tmp_path, _tiny_config(**change), _images())
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / OPTIONS).exists()
