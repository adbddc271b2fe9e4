"""lemmse.store: templates, chunk-aligned region writes, completeness, atomic builds (real Zarr stores)."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from lemmse.errors import LemmseInputError
from lemmse.store import (VariableSpec, atomic_store, chunk_slices, create_template, is_complete,
                          mark_complete, open_dataset, require_complete, save_dataset, write_region)


def _template(path, n_image=10, chunk=4):
    create_template(
        path,
        coords={"split": ["train", "test"], "image": np.arange(n_image), "sigma": [0.1, 0.2, 0.5]},
        sizes={"c": 1},
        variables={"y": VariableSpec(("split", "image", "sigma", "c"), (1, chunk, 1, 1))},
        attrs={"task": "denoising", "nested": {"a": [1, 2]}},
    )


def test_template_is_all_nan_and_incomplete(tmp_path):
    path = tmp_path / "t.zarr"
    _template(path)
    assert not is_complete(path)
    with pytest.raises(LemmseInputError, match="not complete"):
        open_dataset(path)
    ds = open_dataset(path, complete=False)
    assert ds.y.dims == ("split", "image", "sigma", "c")
    assert ds.y.encoding["chunks"] == (1, 4, 1, 1)
    assert np.isnan(ds.y.values).all()
    assert list(ds.split.values) == ["train", "test"]
    assert ds.attrs["nested"] == {"a": [1, 2]}


def test_region_writes_then_complete(tmp_path):
    path = tmp_path / "t.zarr"
    _template(path)
    full = np.random.default_rng(0).standard_normal((2, 10, 3, 1)).astype(np.float32)
    for sl in chunk_slices(10, 4, 8):
        for k in range(3):
            write_region(path, {"y": full[:, sl, k:k + 1]}, {"image": sl, "sigma": slice(k, k + 1)})
    mark_complete(path, note="done")
    require_complete(path)
    ds = xr.open_zarr(path)
    np.testing.assert_array_equal(ds.y.values, full)
    assert ds.attrs["complete"] is True and ds.attrs["note"] == "done"
    df = ds.y.to_dataframe()
    assert len(df) == 2 * 10 * 3


def test_region_write_accepts_dataarray_in_any_dim_order(tmp_path):
    path = tmp_path / "t.zarr"
    _template(path)
    block = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3, 1)
    da = xr.DataArray(block, dims=("split", "image", "sigma", "c")).transpose("c", "sigma", "image", "split")
    write_region(path, {"y": da}, {"image": slice(0, 4)})
    np.testing.assert_array_equal(open_dataset(path, complete=False).y.values[:, :4], block)


@pytest.mark.parametrize("region, match", [
    ({"image": slice(2, 6)}, "not aligned"),
    ({"image": slice(0, 5)}, "not aligned"),
    ({"image": slice(4, 4)}, "non-empty"),
    ({"height": slice(0, 1)}, "height"),
])
def test_misaligned_or_bad_regions_are_refused(tmp_path, region, match):
    path = tmp_path / "t.zarr"
    _template(path)
    n = region.get("image", slice(0, 10))
    n = max(n.stop - n.start, 0) if "image" in region else 10
    with pytest.raises(LemmseInputError, match=match):
        write_region(path, {"y": np.zeros((2, n, 3, 1), np.float32)}, region)
    assert np.isnan(open_dataset(path, complete=False).y.values).all()


def test_wrong_shape_and_unknown_variable(tmp_path):
    path = tmp_path / "t.zarr"
    _template(path)
    with pytest.raises(LemmseInputError, match="shape"):
        write_region(path, {"y": np.zeros((2, 3, 3, 1))}, {"image": slice(0, 4)})
    with pytest.raises(LemmseInputError, match="'x'"):
        write_region(path, {"x": np.zeros(1)}, {})
    with pytest.raises(LemmseInputError, match="does not exist"):
        write_region(tmp_path / "nope.zarr", {"y": np.zeros(1)}, {})


def test_last_partial_chunk_is_allowed(tmp_path):
    path = tmp_path / "t.zarr"
    _template(path)
    write_region(path, {"y": np.ones((2, 2, 3, 1))}, {"image": slice(8, 10)})
    assert (open_dataset(path, complete=False).y.values[:, 8:] == 1).all()


def test_existing_template_needs_overwrite(tmp_path):
    path = tmp_path / "t.zarr"
    _template(path)
    with pytest.raises(LemmseInputError, match="already exists"):
        _template(path)


def test_atomic_store_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "d.zarr"
    with pytest.raises(RuntimeError):
        with atomic_store(target) as tmp:
            save_dataset(xr.Dataset({"a": ("x", np.arange(3.0))}), tmp)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_store_replaces_existing_only_on_success(tmp_path):
    target = tmp_path / "d.zarr"
    save_dataset(xr.Dataset({"a": ("x", np.arange(3.0))}), target, chunks={"a": (2,)})
    assert is_complete(target)
    with pytest.raises(RuntimeError):
        with atomic_store(target) as tmp:
            tmp.mkdir()
            raise RuntimeError("boom")
    np.testing.assert_array_equal(open_dataset(target).a.values, np.arange(3.0))
    save_dataset(xr.Dataset({"a": ("x", np.arange(5.0))}), target)
    np.testing.assert_array_equal(open_dataset(target).a.values, np.arange(5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.zarr"]
    with pytest.raises(LemmseInputError, match="already exists"):
        save_dataset(xr.Dataset({"a": ("x", np.arange(5.0))}), target, overwrite=False)


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 40), chunk=st.integers(1, 8), mult=st.integers(1, 4))
def test_chunk_slices_cover_range_aligned(size, chunk, mult):
    slices = chunk_slices(size, chunk, chunk * mult)
    covered = np.concatenate([np.arange(s.start, s.stop) for s in slices])
    np.testing.assert_array_equal(covered, np.arange(size))
    assert all(s.start % chunk == 0 for s in slices)
