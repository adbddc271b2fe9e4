"""Inference over a measurement store: layout, values, operator checks, no half-written output."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from lemmse import store
from lemmse.cli.main import main
from lemmse.errors import LemmseInputError
from lemmse.training import TrainConfig, infer_store, load_trained, train
from lemmse.training import infer as infer_module

SIGMAS = [0.1, 0.5]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(path, task="denoising", preinverse="identity"):
    images = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    config = TrainConfig(task=task, preinverse=preinverse, arch="resnet", patch=3, model_options={"width": 8},
                         steps=4, batch_size=2, ema_start=1, checkpoint_every=4, log_every=2)
    train(path, config, images)
    return path


def _measurements(path, task="denoising", hole=None, images=5):
    """A measurement store of 8×8 digits as lemmse.data builds it (its data store beside it: the clean x)."""
    from lemmse.data import build_measurements, prepare_dataset

    data = prepare_dataset("digits", path.with_name(f"{path.stem}-data.zarr"), resolution=8, train_size=images,
                           test_size=images)
    return build_measurements(path, data, task=task, sigmas=SIGMAS, n_eval=images, hole=hole)


@pytest.mark.parametrize("task,preinverse,hole", [("denoising", "identity", None), ("inpainting", "pinv", 3)])
def test_outputs_are_the_ema_network_on_b_y_over_the_whole_grid(tmp_path, task, preinverse, hole):
    model = _model(tmp_path / "model", task, preinverse)
    meas = _measurements(tmp_path / "y.zarr", task, hole)
    out = infer_store(model, meas, tmp_path / "xhat.zarr", batch_size=2)
    assert store.is_complete(out)
    ds, y = xr.open_zarr(out), xr.open_zarr(meas)["y"]
    assert ds["xhat"].dims == ("split", "image", "sigma", "c", "h", "w") and ds["xhat"].dtype == np.float32
    assert list(ds["split"].values) == ["train", "test"] and list(ds["sigma"].values) == SIGMAS
    assert ds.attrs["arch"] == "resnet" and ds.attrs["weights"] == "ema" and ds.attrs["step"] == 4
    net, config, _ = load_trained(model)
    mask = torch.ones(8, 8)
    if task == "inpainting":
        mask[3:6, 3:6] = 0  # centred 3×3 hole of an 8×8 grid; A⁺ = diag(mask)
    for s in ("train", "test"):
        for k, sigma in enumerate(SIGMAS):
            v = torch.from_numpy(y.sel(split=s).isel(sigma=k).values) * mask
            with torch.no_grad():
                expected = net(v, sigma).numpy()
            np.testing.assert_allclose(ds["xhat"].sel(split=s).isel(sigma=k).values, expected, atol=1e-6)
    # psnr_truth: PSNR(x̂, x) against the clean images, recomputed here from the data store in float64
    from lemmse.data import load_split

    assert ds["psnr_truth"].dims == ("split", "image", "sigma") and ds["psnr_truth"].dtype == np.float64
    for s in ("train", "test"):
        x = load_split(tmp_path / "y-data.zarr", s, 5).astype(np.float64)[:, None]  # (image, 1, c, h, w)
        out = ds["xhat"].sel(split=s).values.astype(np.float64)  # (image, sigma, c, h, w)
        expected = 10 * np.log10(1 / ((out - x) ** 2).mean(axis=(-3, -2, -1)))
        np.testing.assert_allclose(ds["psnr_truth"].sel(split=s).values, expected, rtol=1e-12)


def test_a_measurement_store_that_names_no_data_store_is_refused(tmp_path):
    """Without its clean images psnr_truth cannot be written: a clear error before any work, no output."""
    model = _model(tmp_path / "model")
    y = np.random.default_rng(1).normal(0.5, 0.3, (2, 3, len(SIGMAS), 1, 8, 8)).astype(np.float32)
    xr.Dataset({"y": (("split", "image", "sigma", "c", "h", "w"), y)},
               coords={"split": ["train", "test"], "image": np.arange(3), "sigma": SIGMAS},
               attrs={"task": "denoising"}).to_zarr(tmp_path / "y.zarr", zarr_format=2)
    with pytest.raises(LemmseInputError, match="y.zarr names no data store"):
        infer_store(model, tmp_path / "y.zarr", tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


def test_mismatched_task_or_operator_is_refused(tmp_path):
    model = _model(tmp_path / "model", "inpainting", "pinv")
    with pytest.raises(LemmseInputError, match="task 'denoising'.*'inpainting'"):
        infer_store(model, _measurements(tmp_path / "a.zarr", "denoising"), tmp_path / "x.zarr")
    with pytest.raises(LemmseInputError, match="hole=5 .* hole=3"):
        infer_store(model, _measurements(tmp_path / "b.zarr", "inpainting", 5), tmp_path / "x.zarr")
    with pytest.raises(LemmseInputError, match="does not exist"):
        infer_store(tmp_path / "nothing", tmp_path / "b.zarr", tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


def test_a_run_that_dies_leaves_no_store(tmp_path, monkeypatch):
    model, meas = _model(tmp_path / "model"), _measurements(tmp_path / "y.zarr")
    calls = {"n": 0}
    write = store.write_region

    def dying(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return write(*args, **kw)

    monkeypatch.setattr(infer_module.store, "write_region", dying)
    with pytest.raises(RuntimeError, match="killed"):
        infer_store(model, meas, tmp_path / "xhat.zarr", batch_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "y-data.zarr", "y.zarr"]


def test_cli_infer(tmp_path, capsys):
    model, meas = _model(tmp_path / "model"), _measurements(tmp_path / "y.zarr")
    assert main(["infer", "--model", str(model), "--measurements", str(meas), "--out", str(tmp_path / "x.zarr"),
                 "--split", "test", "--device", "cpu", "-q"]) == 0
    assert list(xr.open_zarr(tmp_path / "x.zarr")["split"].values) == ["test"]
    assert main(["infer", "--model", str(tmp_path / "none"), "--measurements", str(meas),
                 "--out", str(tmp_path / "z.zarr"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lemmse: error: checkpoint") and "none" in err[0]


def test_a_fixed_sigma_network_is_evaluated_at_its_own_sigma_only(tmp_path):
    """``sigmas``: the store holds those σ only, each output the network at that σ; a σ off the grid is refused."""
    model = _model(tmp_path / "model")
    meas = _measurements(tmp_path / "y.zarr")
    out = infer_store(model, meas, tmp_path / "xhat.zarr", batch_size=2, sigmas=[0.5])
    ds, y = xr.open_zarr(out), xr.open_zarr(meas)["y"]
    assert list(ds["sigma"].values) == [0.5] and ds["xhat"].shape[2] == 1
    net, _, _ = load_trained(model)
    with torch.no_grad():
        expected = net(torch.from_numpy(y.sel(split="test", sigma=0.5).values), 0.5).numpy()
    np.testing.assert_allclose(ds["xhat"].sel(split="test", sigma=0.5).values, expected, atol=1e-6)
    with pytest.raises(LemmseInputError, match="σ = 0.3 is not in measurement store"):
        infer_store(model, meas, tmp_path / "other.zarr", sigmas=[0.3])
    assert not (tmp_path / "other.zarr").exists()
