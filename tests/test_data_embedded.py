"""Embedded datasets (digits, photos, faces) and their prepared stores, on real Zarr stores."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from lemmse.data import DATASETS, array_sha256, load_split, prepare_dataset
from lemmse.errors import LemmseInputError
from lemmse.store import is_complete


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    return prepare_dataset("digits", tmp_path_factory.mktemp("data") / "digits.zarr")


def test_digits_match_the_benchmark_file(digits_store, bench_data_dir):
    ref = np.load(bench_data_dir / "digits16.npy")
    both = np.concatenate([load_split(digits_store, "train"), load_split(digits_store, "test")])
    assert both.dtype == np.float32
    np.testing.assert_array_equal(both, ref)


def test_photos_match_the_benchmark_file(tmp_path, bench_data_dir):
    path = prepare_dataset("photos", tmp_path / "photos.zarr")
    ref = np.load(bench_data_dir / "color16.npy")
    np.testing.assert_array_equal(np.concatenate([load_split(path, "train"), load_split(path, "test")]), ref)


def test_store_layout_and_provenance(digits_store):
    ds = xr.open_zarr(digits_store)
    assert ds.train.dims == ("train_image", "c", "h", "w") and ds.test.dims == ("test_image", "c", "h", "w")
    assert ds.train.shape == (1500, 1, 16, 16) and ds.test.shape == (297, 1, 16, 16)
    assert ds.train.dtype == np.float32
    assert ds.train.encoding["chunks"] == (256, 1, 16, 16)
    for key in ("source", "licence", "url", "preprocessing", "split", "config", "ood_partner"):
        assert ds.attrs[key], key
    assert ds.attrs["ood_partner"] == "faces" and ds.attrs["complete"] is True
    assert ds.attrs["sha256"]["train"] == array_sha256(ds.train.values)
    assert ds.attrs["sha256"]["test"] == array_sha256(ds.test.values)
    np.testing.assert_array_equal(ds.test_source_index.values, np.arange(1500, 1797))
    assert 0.0 <= float(ds.train.min()) and float(ds.train.max()) <= 1.0
    df = ds.test.isel(test_image=slice(0, 2)).to_dataframe()
    assert len(df) == 2 * 16 * 16 and list(df.index.names) == ["test_image", "c", "h", "w"]


def test_preparing_twice_is_byte_identical(digits_store, tmp_path):
    again = prepare_dataset("digits", tmp_path / "again.zarr")
    a, b = xr.open_zarr(digits_store), xr.open_zarr(again)
    assert a.attrs["sha256"] == b.attrs["sha256"]
    for split in ("train", "test"):
        assert a[split].values.tobytes() == b[split].values.tobytes()


def test_dataset_size_subset_is_the_first_training_images(digits_store, tmp_path):
    full = load_split(digits_store, "train")
    np.testing.assert_array_equal(load_split(digits_store, "train", 500), full[:500])
    small = prepare_dataset("digits", tmp_path / "small.zarr", train_size=500)
    np.testing.assert_array_equal(load_split(small, "train"), full[:500])
    with pytest.raises(LemmseInputError, match="count=2000"):
        load_split(digits_store, "train", 2000)
    with pytest.raises(LemmseInputError, match="'val'"):
        load_split(digits_store, "val")


def test_digits_at_native_resolution(tmp_path):
    from sklearn.datasets import load_digits

    path = prepare_dataset("digits", tmp_path / "d8.zarr", resolution=8, train_size=10, test_size=5)
    np.testing.assert_array_equal(load_split(path, "train")[:, 0], (load_digits().images[:10] / 16).astype(np.float32))


def test_photos_32_and_grayscale(tmp_path):
    path = prepare_dataset("photos", tmp_path / "p32.zarr", resolution=32, grayscale=True, ood="faces")
    ds = xr.open_zarr(path)
    assert ds.train.shape == (300, 1, 32, 32) and ds.test.shape == (40, 1, 32, 32)
    assert ds.attrs["ood_partner"] == "faces" and "luma" in ds.attrs["preprocessing"]


def test_faces(tmp_path):
    path = prepare_dataset("faces", tmp_path / "faces.zarr", resolution=20)
    ds = xr.open_zarr(path)
    assert ds.train.shape == (80, 1, 20, 20) and ds.test.shape == (20, 1, 20, 20)
    assert "LFW" in ds.attrs["source"] or "Labeled Faces" in ds.attrs["source"]


@pytest.mark.parametrize("name, config, match", [
    ("mnist", {}, "'mnist'"),
    ("digits", {"train_size": 1600}, "train_size=1600"),
    ("digits", {"test_size": 400}, "test_size=400"),
    ("digits", {"resolution": 32}, "resolution=32"),
    ("digits", {"train_size": 0}, "train_size=0"),
    ("digits", {"colour": True}, "colour"),
    ("digits", {"ood": "photos"}, "ood='photos'"),
    ("digits", {"ood": "digits"}, "ood='digits'"),
    ("photos", {"resolution": 24}, "resolution=24"),
    ("photos", {"resolution": 32, "train_size": 400}, "train_size=400"),
    ("faces", {"resolution": 32}, "resolution=32"),
    ("faces", {"test_size": 21}, "test_size=21"),
    ("photos", {"grayscale": "yes"}, "grayscale"),
])
def test_bad_requests_fail_before_writing(tmp_path, name, config, match):
    out = tmp_path / "x.zarr"
    with pytest.raises(LemmseInputError, match=match):
        prepare_dataset(name, out, **config)
    assert list(tmp_path.iterdir()) == []


def test_registry_lists_every_dataset():
    assert list(DATASETS) == ["digits", "photos", "faces", "fashion_mnist", "cifar10", "ffhq"]
    for spec in DATASETS.values():
        assert {"resolution", "train_size", "test_size", "ood"} <= set(spec.defaults)


def test_failed_rebuild_keeps_the_old_store(digits_store, tmp_path):
    out = prepare_dataset("faces", tmp_path / "f.zarr", train_size=10, test_size=5)
    with pytest.raises(LemmseInputError):
        prepare_dataset("faces", out, train_size=1000)
    assert is_complete(out) and xr.open_zarr(out).train.shape[0] == 10
