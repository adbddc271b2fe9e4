"""The shared measurement store: layout, y = A x + σ z, seeding independent of how work is split."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lemmse.data import (build_measurements, create_measurement_store, finalize_measurements, load_clean,
                         load_measurements, load_split, measure, noise, prepare_dataset)
from lemmse.errors import LemmseInputError
from lemmse.operators import make_problem
from lemmse.store import is_complete

SIGMAS = [0.01, 0.1, 0.5]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare_dataset("faces", tmp_path_factory.mktemp("data") / "faces.zarr", resolution=12,
                           train_size=20, test_start=80, test_size=20)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The whole store built in one go."""
    path = tmp_path_factory.mktemp("meas") / "faces" / "inpainting.zarr"
    build_measurements(path, data, task="inpainting", sigmas=SIGMAS, n_eval=10, image_chunk=4)
    return path


def test_layout_and_attrs(reference, data):
    ds = xr.open_zarr(reference)
    assert ds.y.dims == ("split", "image", "sigma", "c", "h", "w")
    assert ds.y.shape == (2, 10, 3, 1, 12, 12) and ds.y.dtype == np.float32
    assert ds.y.encoding["chunks"] == (1, 4, 1, 1, 12, 12)
    assert list(ds.split.values) == ["train", "test"]
    np.testing.assert_array_equal(ds.image.values, np.arange(10))
    np.testing.assert_array_equal(ds.sigma.values, SIGMAS)
    assert ds.attrs["task"] == "inpainting" and ds.attrs["hole"] == 5 and ds.attrs["blur_std"] is None
    assert ds.attrs["dataset"] == "faces" and ds.attrs["complete"] is True
    assert ds.attrs["data_sha256"] == xr.open_zarr(data).attrs["sha256"]
    assert "SeedSequence" in ds.attrs["noise_recipe"]
    assert (reference.parent / ds.attrs["data_store_relative"]).resolve() == data.resolve()
    df = ds.y.isel(image=slice(0, 1)).to_dataframe()
    assert len(df) == 2 * 3 * 144


def test_y_is_A_x_plus_sigma_z(reference, data):
    problem = make_problem("inpainting", (12, 12))
    for split in ("train", "test"):
        x = load_split(data, split, 10)
        np.testing.assert_array_equal(load_clean(reference, split), x)
        for sigma in SIGMAS:
            y = load_measurements(reference, split, sigma)
            ax = problem.A(torch.from_numpy(x.astype(np.float64))).numpy()
            z = np.stack([noise("faces", split, i, sigma, (1, 12, 12)) for i in range(10)])
            np.testing.assert_array_equal(y, (ax + sigma * z).astype(np.float32))
    y = load_measurements(reference, "test", 0.5)
    hole = slice(6 - 2, 6 - 2 + 5)
    assert np.abs(y[:, :, hole, hole]).max() > 0  # noise on masked pixels too; no clipping
    assert y.min() < 0 or y.max() > 1


def test_noise_is_seeded_per_dataset_split_image_sigma():
    z = noise("faces", "test", 3, 0.1, (1, 4, 4))
    np.testing.assert_array_equal(z, noise("faces", "test", 3, 0.1, (1, 4, 4)))
    for other in (noise("digits", "test", 3, 0.1, (1, 4, 4)), noise("faces", "train", 3, 0.1, (1, 4, 4)),
                  noise("faces", "test", 4, 0.1, (1, 4, 4)), noise("faces", "test", 3, 0.2, (1, 4, 4)),
                  noise("faces", "test", 3, 0.1, (1, 4, 4), seed=1)):
        assert not np.array_equal(z, other)


def test_same_noise_in_another_process(tmp_path):
    """Seeds must not depend on Python's per-process string hashing."""
    import subprocess
    import sys

    code = "from lemmse.data import noise; import sys; sys.stdout.buffer.write(noise('faces','test',3,0.1,(2,2)).tobytes())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout
    assert out == noise("faces", "test", 3, 0.1, (2, 2)).tobytes()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image_cuts=st.lists(st.integers(1, 2), max_size=2), sigma_cut=st.integers(0, 3),
       order=st.permutations([0, 1, 2, 3, 4, 5]))
def test_bit_identical_however_the_job_is_split(reference, data, tmp_path_factory, image_cuts, sigma_cut, order):
    path = tmp_path_factory.mktemp("split") / "m.zarr"
    create_measurement_store(path, data, task="inpainting", sigmas=SIGMAS, n_eval=10, image_chunk=4)
    bounds = sorted({0, 10, *[4 * c for c in image_cuts]})
    image_blocks = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    sigma_blocks = [s for s in (slice(0, sigma_cut), slice(sigma_cut, 3)) if s.stop > s.start]
    jobs = [(split, ib, sb) for split in ("train", "test") for ib in image_blocks for sb in sigma_blocks]
    jobs = [jobs[i] for i in order if i < len(jobs)] + jobs[len(order):]
    for split, ib, sb in jobs:
        assert not is_complete(path)
        measure(path, split=split, images=ib, sigmas=sb)
    finalize_measurements(path)
    got, ref = xr.open_zarr(path).y.values, xr.open_zarr(reference).y.values
    assert got.tobytes() == ref.tobytes()


def test_noise_does_not_depend_on_other_sigmas_or_chunking(reference, data, tmp_path):
    other = build_measurements(tmp_path / "m.zarr", data, task="inpainting", sigmas=[0.5, 0.02],
                               n_eval=7, image_chunk=3)
    np.testing.assert_array_equal(load_measurements(other, "train", 0.5),
                                  load_measurements(reference, "train", 0.5)[:7])


def test_finalize_refuses_missing_blocks(data, tmp_path):
    path = create_measurement_store(tmp_path / "m.zarr", data, task="denoising", sigmas=[0.1], n_eval=8,
                                    image_chunk=4)
    measure(path, split="train")
    measure(path, split="test", images=slice(0, 4))
    with pytest.raises(LemmseInputError, match="4 .* not computed"):
        finalize_measurements(path)
    assert not is_complete(path)
    with pytest.raises(LemmseInputError, match="not complete"):
        load_measurements(path, "train", 0.1)
    with pytest.raises(LemmseInputError, match="not aligned"):
        measure(path, split="test", images=slice(2, 6))
    measure(path, split="test", images=slice(4, 8))
    finalize_measurements(path)
    assert is_complete(path)


@pytest.mark.parametrize("kwargs, match", [
    ({"sigmas": [0.1, 0.0]}, "sigma 0.0"),
    ({"sigmas": [-0.1]}, "sigma -0.1"),
    ({"sigmas": [float("nan")]}, "sigma nan"),
    ({"sigmas": [0.1, 0.1]}, "twice"),
    ({"sigmas": []}, "empty"),
    ({"sigmas": ["a"]}, "'a'"),
    ({"n_eval": 21}, "n_eval=21"),
    ({"n_eval": 0}, "n_eval=0"),
    ({"task": "superres"}, "superres"),
    ({"task": "denoising", "hole": 3}, "hole=3"),
    ({"blur_std": 1.0}, "blur_std=1.0"),
    ({"image_chunk": 0}, "image_chunk=0"),
])
def test_bad_requests_fail_before_writing(data, tmp_path, kwargs, match):
    args = {"task": "inpainting", "sigmas": [0.1], "n_eval": 4, **kwargs}
    with pytest.raises(LemmseInputError, match=match):
        build_measurements(tmp_path / "m.zarr", data, **args)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_or_missing_data_store_is_refused(tmp_path, data):
    with pytest.raises(LemmseInputError, match="does not exist"):
        build_measurements(tmp_path / "m.zarr", tmp_path / "nope.zarr", task="denoising", sigmas=[0.1], n_eval=1)
    path = build_measurements(tmp_path / "m.zarr", data, task="deconvolution", sigmas=[0.1], n_eval=2)
    assert xr.open_zarr(path).attrs["blur_std"] == 1.0
    with pytest.raises(LemmseInputError, match="sigma=0.3"):
        load_measurements(path, "test", 0.3)


def test_changed_data_store_is_detected(tmp_path):
    data = prepare_dataset("faces", tmp_path / "d.zarr", resolution=8, train_size=4, test_start=4, test_size=4)
    path = create_measurement_store(tmp_path / "m.zarr", data, task="denoising", sigmas=[0.1], n_eval=4)
    prepare_dataset("faces", data, resolution=8, train_size=4, test_start=10, test_size=4)
    with pytest.raises(LemmseInputError, match="sha256"):
        measure(path)
