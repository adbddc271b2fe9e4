r"""The analytic stage: estimator stores filled shard by shard.

Layout of ``results/analytic/{dataset}/{task}/{preinverse}/{estimator}/P{patch}/N{train_size}/{eval}.zarr``:

* ``xhat (split, image, sigma, c, h, w)`` float32 — the estimate of every measurement ``y`` of
  the measurement store ``results/measurements/{eval}/{task}.zarr`` (same coordinates);
* for the LE-MMSE stores the plan asks diagnostics of (:meth:`lemmse.plan.sweep.Plan.wants_diagnostics`)
  also every diagnostic of :data:`lemmse.estimators.api.DIAGNOSTICS` (MATH.md "Diagnostics"):
  ``(split, image, sigma, h, w)`` maps ``patch_log_density_paper`` (the paper's log-sum-exp of
  the logits, no constants) and ``patch_log_density`` (normalised, Gaussian constants included)
  float64, ``mass99`` (99 %-mass count), ``source`` (training image owning a single patch with
  ≥ 50 % of the weight) and ``source_image`` (image whose patches together hold ≥ 50 %) float32,
  −1 where no image does; and ``(split, image, sigma)`` float64 summaries
  ``image_log_density_paper``, ``image_log_density``, ``mass99_observed_mean`` and
  ``mass99_observed_median`` (over pixels whose stratum has rank > 0).

:func:`create_store` writes the empty template (NaN = not computed) with chunks of
``images_per_shard`` images × ``sigmas_per_shard`` noise levels × one split, so that each shard
(:func:`compute_shard`: one image block × σ block, both splits) owns whole chunks and shards run
in parallel without two writers on one chunk. A shard killed mid-write leaves its chunks partly
written and its marker absent; rerunning it rewrites every chunk it owns, so the store ends
identical to an uninterrupted run. :func:`finalize_store` refuses while a value is missing, then
marks the store complete.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from lemmse import store as zstore
from lemmse.errors import LemmseInputError
from lemmse.estimators.names import DIAGNOSTIC_MAPS, DIAGNOSTIC_SUMMARIES, MASS_DIAGNOSTICS

log = logging.getLogger(__name__)

#: Storage dtype of each diagnostic (maps of integers fit float32 exactly below 2**24).
DIAGNOSTIC_DTYPES = {"patch_log_density_paper": "float64", "patch_log_density": "float64", "mass99": "float32",
                     "source": "float32", "source_image": "float32", "image_log_density_paper": "float64",
                     "image_log_density": "float64", "mass99_observed_mean": "float64",
                     "mass99_observed_median": "float64"}


def create_store(path: str | os.PathLike, measurements: str | os.PathLike, *, images_per_shard: int,
                 sigmas_per_shard: int, diagnostics: bool, attrs: Mapping[str, Any], mass: bool = True) -> None:
    """The empty estimator store at ``path`` on the grid of the ``measurements`` store, with a variable
    for every diagnostic when ``diagnostics`` (but the 99 %-mass ones when not ``mass``)."""
    meas = zstore.open_dataset(measurements)
    split, image, sigma = (meas[d].values for d in ("split", "image", "sigma"))
    c, h, w = (meas.sizes[d] for d in ("c", "h", "w"))
    ci, cs = min(images_per_shard, len(image)), min(sigmas_per_shard, len(sigma))
    variables = {"xhat": zstore.VariableSpec(("split", "image", "sigma", "c", "h", "w"), (1, ci, cs, c, h, w))}
    if diagnostics:
        skip = () if mass else MASS_DIAGNOSTICS
        for name in DIAGNOSTIC_MAPS:
            if name not in skip:
                variables[name] = zstore.VariableSpec(("split", "image", "sigma", "h", "w"), (1, ci, cs, h, w),
                                                      DIAGNOSTIC_DTYPES[name])
        for name in DIAGNOSTIC_SUMMARIES:
            if name not in skip:
                variables[name] = zstore.VariableSpec(("split", "image", "sigma"), (1, ci, cs),
                                                      DIAGNOSTIC_DTYPES[name])
    zstore.create_template(path, variables=variables,
                           coords={"split": split, "image": image, "sigma": sigma},
                           sizes={"c": c, "h": h, "w": w},
                           attrs={**attrs, "measurements": str(measurements),
                                  "images_per_shard": ci, "sigmas_per_shard": cs}, overwrite=True)


def shard_estimates(path: str | os.PathLike, *, measurements: str | os.PathLike, train: np.ndarray,
                    first_image: int, first_sigma: int, estimate_options: Mapping[str, Any],
                    device: str = "cpu", max_memory: int = 2**31, progress: bool = False):
    """The estimates of one image block × σ block of the store at ``path``, one split at a time.

    Yields ``(split index, images, sigmas, y shape (i, s, c, h, w), EstimateResult)``: exactly the
    engine calls of a shard job (:func:`compute_shard` writes them; ``lemmse bench-shards`` times them
    against the job's benchmark file).
    """
    import torch

    from lemmse.estimators import estimate

    store = zstore.open_dataset(path, complete=False)
    meas = zstore.open_dataset(measurements)
    ci, cs = int(store.attrs["images_per_shard"]), int(store.attrs["sigmas_per_shard"])
    n_img, n_sig = store.sizes["image"], store.sizes["sigma"]
    if first_image % ci or first_sigma % cs or not (0 <= first_image < n_img) or not (0 <= first_sigma < n_sig):
        raise LemmseInputError(f"{path}: shard (image {first_image}, sigma index {first_sigma}) is not "
                               f"a shard of this store ({ci} images × {cs} σ per shard, {n_img} × {n_sig})")
    images = slice(first_image, min(first_image + ci, n_img))
    sigmas = slice(first_sigma, min(first_sigma + cs, n_sig))
    diagnostics, mass = has_diagnostics(store), has_mass(store)
    train_t = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
    for s, split in enumerate(store["split"].values):
        y = meas["y"].sel(split=split).isel(image=images, sigma=sigmas).values  # (i, s, c, h, w)
        n_i, n_s = y.shape[:2]
        sig = np.broadcast_to(meas["sigma"].values[sigmas][None, :], (n_i, n_s)).reshape(-1)
        flat = torch.from_numpy(np.ascontiguousarray(y.reshape(n_i * n_s, *y.shape[2:]), dtype=np.float32))
        result = estimate(train_t, flat, sigma=torch.from_numpy(sig.astype(np.float64)), diagnostics=diagnostics,
                          mass=mass, device=device, max_memory=max_memory, progress=progress, **estimate_options)
        yield s, images, sigmas, y.shape, result


def compute_shard(path: str | os.PathLike, *, measurements: str | os.PathLike, train: np.ndarray,
                  first_image: int, first_sigma: int, estimate_options: Mapping[str, Any],
                  device: str = "cpu", max_memory: int = 2**31, progress: bool = False) -> None:
    """Estimate one image block × σ block (every split) and write it into ``path``."""
    store = zstore.open_dataset(path, complete=False)
    sigma_values = zstore.open_dataset(measurements)["sigma"].values
    for s, images, sigmas, shape, result in shard_estimates(
            path, measurements=measurements, train=train, first_image=first_image, first_sigma=first_sigma,
            estimate_options=estimate_options, device=device, max_memory=max_memory, progress=progress):
        n_i, n_s = shape[:2]
        block = {"xhat": result.xhat.cpu().numpy().reshape(shape)[None]}
        for key in result.diagnostics:
            value = result.diagnostics[key].cpu().numpy()
            block[key] = value.reshape(n_i, n_s, *value.shape[1:])[None].astype(store[key].dtype)
        zstore.write_region(path, block, {"split": slice(s, s + 1), "image": images, "sigma": sigmas})
        log.info("%s: split %s, images %d-%d, σ %s written", path, store["split"].values[s], images.start,
                 images.stop - 1, ", ".join(f"{v:g}" for v in sigma_values[sigmas]))


def has_diagnostics(store) -> bool:
    """Whether an estimator store (an open dataset) was created with the LE-MMSE diagnostics (the
    99 %-mass ones aside: :func:`has_mass`)."""
    return all(name in store.data_vars for name in DIAGNOSTIC_DTYPES if name not in MASS_DIAGNOSTICS)


def has_mass(store) -> bool:
    """Whether an estimator store also holds the 99 %-mass diagnostics (their extra pass was run)."""
    return has_diagnostics(store) and all(name in store.data_vars for name in MASS_DIAGNOSTICS)


def finalize_store(path: str | os.PathLike) -> None:
    """Mark ``path`` complete after checking every estimate was written (no NaN left)."""
    ds = zstore.open_dataset(path, complete=False)
    missing = int(np.isnan(ds["xhat"].values).any(axis=(3, 4, 5)).sum())
    if missing:
        raise LemmseInputError(f"{path}: {missing} (split, image, σ) estimates are still missing; "
                               "run every shard before finalizing")
    zstore.mark_complete(path)


def nearest_train_distance(images: np.ndarray, train: np.ndarray, block: int = 4096) -> np.ndarray:
    """RMS distance of each image to its nearest training image, ``(n,)`` float64 (exact differences)."""
    a = images.reshape(images.shape[0], -1).astype(np.float64)
    best = np.full(a.shape[0], np.inf)
    for start in range(0, train.shape[0], block):
        t = train[start : start + block].reshape(-1, a.shape[1]).astype(np.float64)
        for i in range(a.shape[0]):
            d = ((t - a[i]) ** 2).mean(axis=1).min()
            best[i] = min(best[i], d)
    return np.sqrt(best)

