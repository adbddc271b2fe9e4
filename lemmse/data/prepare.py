r"""Prepare a dataset into its store ``results/data/{dataset}.zarr`` and read it back.

Store layout (one Zarr group, see :mod:`lemmse.store`)::

    train             float32 (train_image, c, h, w)   values in [0, 1], chunks (≤256, c, h, w)
    test              float32 (test_image, c, h, w)
    train_image       int64 (train_image)              0 … train_size-1
    test_image        int64 (test_image)               0 … test_size-1
    train_source_index int64 (train_image)             position of each image in the source's order
    test_source_index  int64 (test_image)

The two splits have their own image dimensions (``train_image``, ``test_image``) because they
differ in length. Root attributes: ``dataset``, ``summary``, ``source``, ``licence``, ``url``,
``preprocessing`` (the recipe in words), ``split`` (the split rule in words), ``config`` (every
resolved config value), ``channels``, ``resolution``, ``train_size``, ``test_size``, ``sha256``
(``{"train": …, "test": …}``: SHA-256 of each array's little-endian float32 C-order bytes),
``ood_partner`` (name of the dataset whose *test* split is this one's out-of-distribution set; same
channel count; ``None`` when there is none) and ``complete`` (``True`` once fully written).

A dataset-size ablation uses the first ``N`` training images: ``load_split(path, "train", N)``.
Preparing twice gives byte-identical arrays (and equal ``sha256`` attrs).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from lemmse.data import cifar10, fashion_mnist, ffhq
from lemmse.data.base import DatasetSpec, SplitImages
from lemmse.data.embedded import embedded_specs
from lemmse.errors import LemmseInputError
from lemmse.store import open_dataset, save_dataset

log = logging.getLogger(__name__)

#: every dataset by name: the embedded ones first, then the real loaders
DATASETS: dict[str, DatasetSpec] = {**embedded_specs(), "fashion_mnist": fashion_mnist.SPEC,
                                    "cifar10": cifar10.SPEC, "ffhq": ffhq.SPEC}
SPLITS = ("train", "test")
IMAGE_CHUNK = 256
_INT_KEYS = {"resolution": 1, "train_size": 1, "test_size": 1, "test_start": 0}
_BOOL_KEYS = ("download", "grayscale")


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``; unknown names are refused, listing the known ones."""
    if name not in DATASETS:
        raise LemmseInputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def resolve_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults of ``name`` overridden by ``config`` (``None`` values = not given), type-checked.

    ``ood: "none"`` removes a default OOD partner. Unknown keys, non-integer or too small sizes, non-boolean flags and an OOD partner that is
    unknown, the dataset itself or of another channel count are refused, naming key and value.
    """
    spec = get_spec(name)
    unknown = sorted(set(config) - set(spec.defaults))
    if unknown:
        raise LemmseInputError(f"{name}: unknown config key(s) {', '.join(unknown)}; "
                               f"accepted: {', '.join(spec.defaults)}")
    resolved = dict(spec.defaults)
    resolved.update({k: v for k, v in config.items() if v is not None})
    for key, minimum in _INT_KEYS.items():
        value = resolved.get(key)
        if key in resolved and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise LemmseInputError(f"{name}: {key}={value!r} must be an integer >= {minimum}")
            resolved[key] = int(value)
    for key in _BOOL_KEYS:
        if key in resolved and not isinstance(resolved[key], bool):
            raise LemmseInputError(f"{name}: {key}={resolved[key]!r} must be true or false")
    if resolved.get("root") is not None:
        resolved["root"] = str(resolved["root"])
    if resolved.get("ood") in ("none", ""):  # explicitly no partner (overrides a default one)
        resolved["ood"] = None
    partner = resolved.get("ood")
    if partner is not None:
        if partner == name or partner not in DATASETS:
            raise LemmseInputError(f"{name}: ood={partner!r} must name another dataset: "
                                   f"{', '.join(n for n in DATASETS if n != name)}")
        ours, theirs = spec.channels(resolved), DATASETS[partner].channels(DATASETS[partner].defaults)
        if ours != theirs:
            raise LemmseInputError(f"{name}: ood={partner!r} has {theirs} channel(s), {name} has {ours}")
    return resolved


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's little-endian float32 C-order bytes."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def _validate(name: str, split: SplitImages, channels: int, resolution: int) -> None:
    for key in SPLITS:
        arr = getattr(split, key)
        if arr.dtype != np.float32 or arr.ndim != 4 or arr.shape[1:] != (channels, resolution, resolution):
            raise RuntimeError(f"{name}: recipe produced {key} {arr.dtype} {arr.shape}, expected "
                               f"float32 (n, {channels}, {resolution}, {resolution})")
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise RuntimeError(f"{name}: recipe produced {key} values outside [0, 1]")


def build_dataset(name: str, **config: Any) -> xr.Dataset:
    """Check ``config`` (before any heavy work), run the recipe and return the in-memory store contents."""
    spec = get_spec(name)
    resolved = resolve_config(name, config)
    spec.check(resolved)
    log.info("preparing %s (%s)", name, ", ".join(f"{k}={v}" for k, v in resolved.items() if k != "download"))
    split = spec.build(resolved)
    channels, resolution = spec.channels(resolved), resolved["resolution"]
    _validate(name, split, channels, resolution)
    dims = ("c", "h", "w")
    return xr.Dataset(
        {
            "train": (("train_image",) + dims, np.ascontiguousarray(split.train)),
            "test": (("test_image",) + dims, np.ascontiguousarray(split.test)),
        },
        coords={
            "train_image": np.arange(len(split.train), dtype=np.int64),
            "test_image": np.arange(len(split.test), dtype=np.int64),
            "train_source_index": ("train_image", np.asarray(split.train_index, dtype=np.int64)),
            "test_source_index": ("test_image", np.asarray(split.test_index, dtype=np.int64)),
        },
        attrs={
            "dataset": name, "summary": spec.summary, **split.attrs,
            "config": resolved, "channels": channels, "resolution": resolution,
            "train_size": len(split.train), "test_size": len(split.test),
            "sha256": {key: array_sha256(getattr(split, key)) for key in SPLITS},
            "ood_partner": resolved.get("ood"), "ood_split": "test",
            "layout": "train (train_image, c, h, w), test (test_image, c, h, w); float32 in [0, 1]",
        },
    )


def prepare_dataset(name: str, out_path: str | os.PathLike, *, overwrite: bool = True, **config: Any) -> Path:
    """Prepare dataset ``name`` with ``config`` into the store ``out_path`` (atomically) and return it.

    ``config`` keys (each dataset accepts a subset; see ``DATASETS[name].defaults``):
    ``resolution``, ``train_size``, ``test_size``, ``test_start`` (pool datasets), ``grayscale``
    (photos), ``root`` and ``download`` (real datasets), ``ood`` (the OOD partner's name).
    Every check runs before the recipe; the store appears at ``out_path`` only when complete.
    """
    out_path = Path(out_path)
    if not overwrite and out_path.exists():
        raise LemmseInputError(f"{out_path} already exists; refusing to overwrite it")
    ds = build_dataset(name, **config)
    chunks = {key: (IMAGE_CHUNK,) + ds[key].shape[1:] for key in SPLITS}
    save_dataset(ds, out_path, chunks=chunks, overwrite=overwrite)
    log.info("wrote %s: train %s, test %s", out_path, ds.train.shape, ds.test.shape)
    return out_path


def open_data(store_path: str | os.PathLike) -> xr.Dataset:
    """Open a complete dataset store lazily (refusing incomplete or non-dataset stores)."""
    ds = open_dataset(store_path)
    if not {"train", "test"} <= set(ds.data_vars):
        raise LemmseInputError(f"{store_path} is not a dataset store (no train/test variables)")
    return ds


def load_split(store_path: str | os.PathLike, split: str, count: int | None = None) -> np.ndarray:
    """Images of ``split`` ("train" or "test") as float32 ``(N, C, H, W)``; the first ``count`` if given."""
    if split not in SPLITS:
        raise LemmseInputError(f"unknown split {split!r}; choose train or test")
    ds = open_data(store_path)
    var = ds[split]
    if count is not None:
        if count < 0 or count > var.shape[0]:
            raise LemmseInputError(f"{store_path}: count={count} images requested from {split}, which has {var.shape[0]}")
        var = var.isel({f"{split}_image": slice(0, count)})
    return np.ascontiguousarray(var.values, dtype=np.float32)
