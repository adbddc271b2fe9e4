r"""The shared measurement store ``results/measurements/{dataset}/{task}.zarr``.

Every consumer (networks and estimators) reads its noisy measurements from here, so all of them
see the very same ``y``.

Layout (one Zarr group, see :mod:`lemmse.store`)::

    y       float32 (split, image, sigma, c, h, w)   chunks (1, image_chunk, 1, c, h, w)
    split   str     ["train", "test"]
    image   int64   0 … n_eval-1: index into that split of the data store (its first n_eval images)
    sigma   float64 the noise levels, in config order

Root attributes: ``dataset``, ``task``, ``hole`` (inpainting; the resolved side) and
``blur_std`` (deconvolution; the resolved std), ``image_size``, ``channels``, ``n_eval``,
``sigmas``, ``seed``, ``data_store`` (the path as given), ``data_store_relative`` (the same path
relative to this store's parent folder), ``data_sha256`` (the data store's ``sha256`` attr, checked
before every write), ``x_lookup`` (how to get the clean ``x``, which is not duplicated here),
``noise_recipe`` and ``complete``.

Forward model and noise: ``y = A x + σ z`` (not clipped; noise on every pixel, masked ones
included), with ``A x`` computed in float64 one image at a time and ``y`` rounded to float32 once.
``z`` is drawn per (dataset, split, image, σ)::

    ss = numpy.random.SeedSequence(seed, spawn_key=(id(dataset), id(split), image, bits(σ)))
    z  = numpy.random.default_rng(ss).standard_normal((C, H, W))          # float64

with ``id(s)`` the first 8 bytes of SHA-256 of the UTF-8 name read as a little-endian unsigned
integer and ``bits(σ)`` the IEEE-754 bits of ``float64(σ)`` as an unsigned integer. Nothing
depends on the order, batching or job split of the computation, nor on which other σ or images
are in the config, so ``y`` is bit-identical however the work is divided.

Python API: :func:`build_measurements` (all at once, atomically), or for many independent jobs
:func:`create_measurement_store` → :func:`measure` (any chunk-aligned image block × σ block, any
split) → :func:`finalize_measurements`; then :func:`load_measurements`, :func:`load_clean`,
:func:`noise`.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from lemmse.data.prepare import SPLITS, open_data
from lemmse.errors import LemmseInputError
from lemmse.progress import progress_bar
from lemmse.store import (VariableSpec, atomic_store, chunk_slices, create_template, mark_complete,
                          open_dataset, write_region)

log = logging.getLogger(__name__)

DEFAULT_IMAGE_CHUNK = 64
NOISE_RECIPE = ("z = numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(id(dataset), "
                "id(split), image, bits(sigma)))).standard_normal((C, H, W)) in float64; id(s) = first 8 "
                "bytes of sha256(s.encode('utf-8')) as little-endian unsigned int; bits(sigma) = IEEE-754 "
                "bits of float64(sigma) as unsigned int; y = float32(A x + sigma z), A x in float64, no clipping")


def stable_id(name: str) -> int:
    """A process-independent integer for ``name`` (first 8 bytes of its SHA-256, little-endian)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def sigma_bits(sigma: float) -> int:
    """The IEEE-754 bits of ``float64(sigma)`` as an unsigned integer."""
    return struct.unpack("<Q", struct.pack("<d", float(sigma)))[0]


def noise(dataset: str, split: str, image: int, sigma: float, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The standard normal ``z`` (float64, ``shape``) of one (dataset, split, image, σ); see the module doc."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(stable_id(dataset), stable_id(split), int(image),
                                                      sigma_bits(sigma)))
    return np.random.default_rng(ss).standard_normal(shape)


def validate_sigmas(sigmas: Sequence[float]) -> list[float]:
    """A non-empty list of distinct finite σ > 0 (as floats); the first bad value is named."""
    if isinstance(sigmas, (int, float)):
        sigmas = [sigmas]
    values = []
    for s in sigmas:
        try:
            value = float(s)
        except (TypeError, ValueError):
            raise LemmseInputError(f"sigma {s!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise LemmseInputError(f"sigma {s!r} must be a finite number > 0")
        if value in values:
            raise LemmseInputError(f"sigma {s!r} is listed twice")
        values.append(value)
    if not values:
        raise LemmseInputError("the sigma list is empty")
    return values


def _problem_params(task: str, image_size: tuple[int, int], hole: int | None, blur_std: float | None):
    from lemmse.operators import default_hole, make_problem

    problem = make_problem(task, image_size, hole=hole, blur_std=blur_std)  # refuses misfit parameters
    if task == "inpainting":
        hole = default_hole(image_size) if hole is None else int(hole)
    if task == "deconvolution":
        blur_std = 1.0 if blur_std is None else float(blur_std)
    return problem, hole, blur_std


def create_measurement_store(path: str | os.PathLike, data_store: str | os.PathLike, *, task: str,
                             sigmas: Sequence[float], n_eval: int, hole: int | None = None,
                             blur_std: float | None = None, seed: int = 0,
                             image_chunk: int = DEFAULT_IMAGE_CHUNK, overwrite: bool = False) -> Path:
    """Create the empty (NaN) measurement store at ``path`` for the first ``n_eval`` images of each split.

    Checks everything first: the data store is complete, ``n_eval`` (1 … the smaller split's
    size), σ (distinct, finite, > 0), the task and its parameters, ``image_chunk >= 1``.
    """
    path, data_store = Path(path), Path(data_store)
    sigmas = validate_sigmas(sigmas)
    data = open_data(data_store)
    if isinstance(n_eval, bool) or not isinstance(n_eval, (int, np.integer)) or n_eval < 1:
        raise LemmseInputError(f"n_eval={n_eval!r} must be an integer >= 1")
    for split in SPLITS:
        if n_eval > data[split].shape[0]:
            raise LemmseInputError(f"n_eval={n_eval} exceeds the {data[split].shape[0]} {split} images of {data_store}")
    if isinstance(image_chunk, bool) or not isinstance(image_chunk, (int, np.integer)) or image_chunk < 1:
        raise LemmseInputError(f"image_chunk={image_chunk!r} must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LemmseInputError(f"seed={seed!r} must be an integer >= 0")
    _, c, h, w = data["train"].shape
    _, hole, blur_std = _problem_params(task, (h, w), hole, blur_std)
    dataset = data.attrs["dataset"]
    rel = os.path.relpath(data_store.resolve(), path.resolve().parent)
    create_template(
        path, overwrite=overwrite,
        coords={"split": np.array(SPLITS), "image": np.arange(n_eval, dtype=np.int64),
                "sigma": np.array(sigmas, dtype=np.float64)},
        sizes={"c": c, "h": h, "w": w},
        variables={"y": VariableSpec(("split", "image", "sigma", "c", "h", "w"), (1, int(image_chunk), 1, c, h, w),
                                     attrs={"long_name": "measurement y = A x + sigma z"})},
        attrs={
            "dataset": dataset, "task": task, "hole": hole, "blur_std": blur_std, "image_size": [h, w],
            "channels": c, "n_eval": int(n_eval), "sigmas": sigmas, "seed": int(seed),
            "data_store": str(data_store), "data_store_relative": rel,
            "data_sha256": dict(data.attrs["sha256"]),
            "x_lookup": "x = xr.open_zarr(data_store)[split].isel({split}_image=image): image i of split s is "
                        "image i of that split in the data store (first n_eval images)",
            "noise_recipe": NOISE_RECIPE,
        })
    return path


def _data_store_of(path: Path, attrs: dict) -> Path:
    relative = path.parent / attrs["data_store_relative"]
    for candidate in (relative, Path(attrs["data_store"])):
        if candidate.exists():
            return candidate
    raise LemmseInputError(f"{path}: its data store {attrs['data_store']} (or {relative}) does not exist")


def _split_list(split: str | Sequence[str] | None) -> list[str]:
    if split is None:
        return list(SPLITS)
    splits = [split] if isinstance(split, str) else list(split)
    for s in splits:
        if s not in SPLITS:
            raise LemmseInputError(f"unknown split {s!r}; choose train or test")
    return splits


def measure(path: str | os.PathLike, *, split: str | Sequence[str] | None = None, images: slice | None = None,
            sigmas: slice | None = None, progress: bool = False) -> None:
    """Compute ``y`` for an image block × σ block of one or both splits and write it into ``path``.

    ``images`` and ``sigmas`` are index slices on the store's ``image`` and ``sigma`` dimensions
    (default: all); ``images`` must be aligned to the image chunks (see :func:`lemmse.store.write_region`).
    The block is processed one image chunk at a time. Results do not depend on how the work is split.
    """
    import torch

    path = Path(path)
    store = open_dataset(path, complete=False)
    attrs = dict(store.attrs)
    y_var = store["y"]
    image_chunk = y_var.encoding["chunks"][1]
    n_eval, all_sigmas = store.sizes["image"], [float(s) for s in store["sigma"].values]
    img_range = range(*(images or slice(None)).indices(n_eval))
    sig_range = range(*(sigmas or slice(None)).indices(len(all_sigmas)))
    if len(img_range) == 0 or img_range.step != 1 or len(sig_range) == 0 or sig_range.step != 1:
        raise LemmseInputError(f"{path}: images={images} and sigmas={sigmas} must be non-empty slices with step 1")
    if img_range.start % image_chunk or (img_range.stop % image_chunk and img_range.stop != n_eval):
        raise LemmseInputError(f"{path}: images={img_range.start}:{img_range.stop} is not aligned to the image "
                               f"chunks of {image_chunk} (n_eval {n_eval})")
    data_path = _data_store_of(path, attrs)
    data = open_data(data_path)
    if dict(data.attrs["sha256"]) != dict(attrs["data_sha256"]):
        raise LemmseInputError(f"{data_path}: its arrays changed since {path} was created (sha256 differs); "
                               "rebuild the measurement store")
    h, w = attrs["image_size"]
    problem, _, _ = _problem_params(attrs["task"], (h, w), attrs["hole"], attrs["blur_std"])
    sig_values = all_sigmas[sig_range.start:sig_range.stop]
    blocks = [(s, sl) for s in _split_list(split)
              for sl in chunk_slices(img_range.stop - img_range.start, image_chunk)]
    for s, rel in progress_bar(blocks, enabled=progress, desc="measure", unit="block"):
        sl = slice(img_range.start + rel.start, img_range.start + rel.stop)
        x = np.asarray(data[s].isel({f"{s}_image": sl}).values, dtype=np.float64)
        y = np.empty((1, len(x), len(sig_values)) + x.shape[1:], np.float32)
        for k, image in enumerate(range(sl.start, sl.stop)):
            ax = problem.A(torch.from_numpy(x[k:k + 1])).numpy()[0]
            for j, sigma in enumerate(sig_values):
                z = noise(attrs["dataset"], s, image, sigma, ax.shape, attrs["seed"])
                y[0, k, j] = (ax + sigma * z).astype(np.float32)
        write_region(path, {"y": y}, {"split": slice(SPLITS.index(s), SPLITS.index(s) + 1), "image": sl,
                                      "sigma": slice(sig_range.start, sig_range.stop)})


def finalize_measurements(path: str | os.PathLike) -> None:
    """Check that every ``y`` value was written (no NaN left), then mark the store complete."""
    path = Path(path)
    y = open_dataset(path, complete=False)["y"]
    missing = int(np.isnan(y.values).any(axis=(3, 4, 5)).sum())
    if missing:
        raise LemmseInputError(f"{path}: {missing} (split, image, sigma) measurement(s) are not computed yet")
    mark_complete(path)


def build_measurements(path: str | os.PathLike, data_store: str | os.PathLike, *, task: str,
                       sigmas: Sequence[float], n_eval: int, hole: int | None = None,
                       blur_std: float | None = None, seed: int = 0,
                       image_chunk: int = DEFAULT_IMAGE_CHUNK, overwrite: bool = True,
                       progress: bool = False) -> Path:
    """Create, fill and finalise the whole measurement store in one go; ``path`` appears only when complete."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise LemmseInputError(f"{path} already exists; refusing to overwrite it")
    with atomic_store(path) as tmp:
        create_measurement_store(tmp, data_store, task=task, sigmas=sigmas, n_eval=n_eval, hole=hole,
                                 blur_std=blur_std, seed=seed, image_chunk=image_chunk)
        measure(tmp, progress=progress)
        finalize_measurements(tmp)
    log.info("wrote %s", path)
    return path


def open_measurements(path: str | os.PathLike):
    """Open a complete measurement store lazily as an :class:`xarray.Dataset`."""
    ds = open_dataset(path)
    if "y" not in ds.data_vars:
        raise LemmseInputError(f"{path} is not a measurement store (no variable y)")
    return ds


def load_measurements(path: str | os.PathLike, split: str, sigma: float) -> np.ndarray:
    """``y`` of ``split`` at noise level ``sigma`` as float32 ``(n_eval, C, H, W)``.

    ``sigma`` must equal one of the store's σ (compared after rounding both to float64; a
    relative difference below 1e-12 is accepted), else the available ones are listed.
    """
    _split_list(split)
    ds = open_measurements(path)
    values = ds["sigma"].values
    match = np.flatnonzero(np.isclose(values, float(sigma), rtol=1e-12, atol=0.0))
    if len(match) != 1:
        raise LemmseInputError(f"{path}: sigma={sigma!r} is not in the store; it has {', '.join(map(repr, values.tolist()))}")
    y = ds["y"].isel(sigma=int(match[0])).sel(split=split)
    return np.ascontiguousarray(y.values, dtype=np.float32)


def load_clean(path: str | os.PathLike, split: str) -> np.ndarray:
    """The clean ``x`` behind the measurements of ``split``: float32 ``(n_eval, C, H, W)`` from the data store."""
    _split_list(split)
    path = Path(path)
    ds = open_measurements(path)
    data = open_data(_data_store_of(path, dict(ds.attrs)))
    x = data[split].isel({f"{split}_image": slice(0, ds.sizes["image"])})
    return np.ascontiguousarray(x.values, dtype=np.float32)


__all__ = ["stable_id", "sigma_bits", "noise", "validate_sigmas", "create_measurement_store", "measure",
           "finalize_measurements", "build_measurements", "open_measurements", "load_measurements",
           "load_clean", "NOISE_RECIPE"]
