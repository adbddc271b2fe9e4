r"""The analytic stage: estimator stores filled shard by shard.

Layout of ``results/analytic/{dataset}/{task}/{preinverse}/{estimator}/P{patch}/N{train_size}/{eval}.zarr``,
on the grid of the measurement store ``results/measurements/{eval}/{task}.zarr`` (same coordinates).
Every value is written by the shard that owns its chunk (:func:`compute_shard`); the gather stage
(:mod:`lemmse.gather`) and the figures only read them.

* ``xhat (split, image, sigma, c, h, w)`` float32 — the estimate x̂(y) of every measurement ``y``;
* ``by (split, image, sigma, c, h, w)`` float32 — ``B y``, the pre-inverse the estimator used
  (its kind, λ, hole, blur) applied to ``y`` once (:func:`lemmse.operators.preinvert`, float64
  rounded to float32 for storage): what the figures show as "B y";
* :data:`SUMMARIES`, ``(split, image, sigma)`` float64, with x the clean image behind ``y``
  (:func:`lemmse.data.load_clean`) and ``T = {t_1 … t_N}`` the training images::

      psnr_truth                    PSNR(x̂, x)                        (lemmse.metrics.psnr, peak 1)
      psnr_input                    PSNR(B y, x̂)                      (B y in float64)
      nearest_train_distance        min_k  sqrt(mean_p (x̂_p − t_{k,p})²)   (RMS, exact differences)
      nearest_train_index           the k of that minimum (the first one on ties)
      truth_nearest_train_distance  min_k  sqrt(mean_p (x_p − t_{k,p})²)  (the same for x; constant along σ,
                                    written along σ so that each shard writes only its own chunks)

* ``xhat (split, image, sigma, c, h, w)`` float32 — the estimate of every measurement ``y`` of
  the measurement store ``results/measurements/{eval}/{task}.zarr`` (same coordinates);
* for the LE-MMSE stores the plan asks diagnostics of (:meth:`lemmse.plan.sweep.Plan.wants_diagnostics`)
  also every diagnostic of :data:`lemmse.estimators.api.DIAGNOSTICS` (MATH.md "Diagnostics"):
  ``(split, image, sigma, h, w)`` maps ``patch_log_density_paper`` (the paper's log-sum-exp of
  the logits, no constants) and ``patch_log_density`` (normalised, Gaussian constants included)
  float64, ``mass99`` (99 %-mass count), ``source`` (training image owning a single patch with
  ≥ 50 % of the weight) and ``source_image`` (image whose patches together hold ≥ 50 %) float32,
  −1 where no image does; ``(split, image, sigma)`` float64 summaries
  ``image_log_density_paper``, ``image_log_density``, ``mass99_observed_mean`` and
  ``mass99_observed_median`` (over pixels whose stratum has rank > 0); and the
  :data:`DIAGNOSTIC_REDUCTIONS` of those maps, ``(split, image, sigma)`` float64::

      neg_log_density_patch_paper       −(1/HW) Σ_{pixels} patch_log_density_paper
      neg_log_density_patch_normalised  −(1/HW) Σ_{pixels} patch_log_density
      distinct_sources                  #{ source[pixel] : source[pixel] ≥ 0 }  (distinct training images)

:func:`create_store` writes the empty template (NaN = not computed) with chunks of
``images_per_shard`` images × ``sigmas_per_shard`` noise levels × one split, so that each shard
(:func:`compute_shard`: one image block × σ block, both splits) owns whole chunks and shards run
in parallel without two writers on one chunk; a shard job runs one or several shards in one process
(:func:`compute_shard_job`). A shard killed mid-write leaves its chunks partly
written and its marker absent; rerunning it rewrites every chunk it owns, so the store ends
identical to an uninterrupted run. :func:`finalize_store` refuses while a value is missing, then
marks the store complete.
"""
from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from lemmse import store as zstore
from lemmse.errors import LemmseInputError
from lemmse.estimators.names import DIAGNOSTIC_MAPS, DIAGNOSTIC_SUMMARIES, MASS_DIAGNOSTICS
from lemmse.metrics import psnr

if TYPE_CHECKING:  # torch is imported where it is used, so that readers of the stores need not load it
    import torch

log = logging.getLogger(__name__)

#: Storage dtype of each diagnostic (maps of integers fit float32 exactly below 2**24).
DIAGNOSTIC_DTYPES = {"patch_log_density_paper": "float64", "patch_log_density": "float64", "mass99": "float32",
                     "source": "float32", "source_image": "float32", "image_log_density_paper": "float64",
                     "image_log_density": "float64", "mass99_observed_mean": "float64",
                     "mass99_observed_median": "float64"}
#: The ``(split, image, sigma)`` float64 summaries every shard writes (module docstring).
SUMMARIES = ("psnr_truth", "psnr_input", "nearest_train_distance", "nearest_train_index",
             "truth_nearest_train_distance")
#: The ``(split, image, sigma)`` float64 reductions of the diagnostic maps, on stores with diagnostics.
DIAGNOSTIC_REDUCTIONS = ("neg_log_density_patch_paper", "neg_log_density_patch_normalised", "distinct_sources")
#: Dims of the estimate and of ``B y``.
IMAGE_DIMS = ("split", "image", "sigma", "c", "h", "w")


def create_store(path: str | os.PathLike, measurements: str | os.PathLike, *, images_per_shard: int,
                 sigmas_per_shard: int, diagnostics: bool, attrs: Mapping[str, Any], mass: bool = True) -> None:
    """The empty estimator store at ``path`` on the grid of the ``measurements`` store: ``xhat``, ``by`` and
    the :data:`SUMMARIES`, and when ``diagnostics`` a variable for every diagnostic (but the 99 %-mass ones
    when not ``mass``) and the :data:`DIAGNOSTIC_REDUCTIONS`."""
    meas = zstore.open_dataset(measurements)
    split, image, sigma = (meas[d].values for d in ("split", "image", "sigma"))
    c, h, w = (meas.sizes[d] for d in ("c", "h", "w"))
    ci, cs = min(images_per_shard, len(image)), min(sigmas_per_shard, len(sigma))
    summary = zstore.VariableSpec(("split", "image", "sigma"), (1, ci, cs), "float64")
    variables = {name: zstore.VariableSpec(IMAGE_DIMS, (1, ci, cs, c, h, w)) for name in ("xhat", "by")}
    variables.update(dict.fromkeys(SUMMARIES, summary))
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
        variables.update(dict.fromkeys(DIAGNOSTIC_REDUCTIONS, summary))
    zstore.create_template(path, variables=variables,
                           coords={"split": split, "image": image, "sigma": sigma},
                           sizes={"c": c, "h": h, "w": w},
                           attrs={**attrs, "measurements": str(measurements),
                                  "images_per_shard": ci, "sigmas_per_shard": cs}, overwrite=True)


class ShardReads:
    """The stores a shard job reads, each opened (and each split's clean images loaded) once.

    A job's shards share measurement, data and estimator stores; opening a Zarr store costs about
    10 ms and a shard opened eight, which was 6 % of a small shard job. Only the templates'
    metadata and the finished input stores are read, so nothing cached goes stale while the job
    writes its chunks. One instance per job (:func:`compute_shard_job`), never kept across jobs.
    """

    def __init__(self):
        self._datasets: dict[tuple[str, bool], Any] = {}
        self._clean: dict[tuple[str, str], np.ndarray] = {}

    def dataset(self, path: str | os.PathLike, *, complete: bool = True):
        """:func:`lemmse.store.open_dataset` of ``path``, opened on the first call."""
        key = (os.fspath(path), complete)
        if key not in self._datasets:
            self._datasets[key] = zstore.open_dataset(path, complete=complete)
        return self._datasets[key]

    def clean(self, measurements: str | os.PathLike, split: str) -> np.ndarray:
        """:func:`lemmse.data.load_clean` of ``measurements``' ``split``, loaded on the first call."""
        from lemmse.data import load_clean

        key = (os.fspath(measurements), split)
        if key not in self._clean:
            self._clean[key] = load_clean(measurements, split)
        return self._clean[key]


def shard_estimates(path: str | os.PathLike, *, measurements: str | os.PathLike, train: np.ndarray,
                    first_image: int, first_sigma: int, estimate_options: Mapping[str, Any],
                    device: str = "cpu", max_memory: int = 2**31, progress: bool = False,
                    reads: ShardReads | None = None):
    """The estimates of one image block × σ block of the store at ``path``, one split at a time.

    Yields ``(split index, images, sigmas, y (i, s, c, h, w), EstimateResult)``: exactly the
    engine calls of a shard job (:func:`compute_shard` writes them; ``lemmse bench-shards`` times them
    against the job's benchmark file). ``reads``: the job's opened stores (a fresh one by default).
    """
    import torch

    from lemmse.estimators import estimate

    reads = reads or ShardReads()
    store = reads.dataset(path, complete=False)
    meas = reads.dataset(measurements)
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
        yield s, images, sigmas, y, result


def compute_shard(path: str | os.PathLike, *, measurements: str | os.PathLike, train: np.ndarray,
                  first_image: int, first_sigma: int, estimate_options: Mapping[str, Any],
                  device: str = "cpu", max_memory: int = 2**31, progress: bool = False,
                  reads: ShardReads | None = None) -> int:
    """Estimate one image block × σ block (every split) and write it into ``path``: the estimates, ``B y``,
    the :data:`SUMMARIES` and, where the store has them, the diagnostics and their reductions. Returns
    the number of estimates written (images × σ × splits). ``reads``: the job's opened stores."""
    reads = reads or ShardReads()
    store = reads.dataset(path, complete=False)
    sigma_values = reads.dataset(measurements)["sigma"].values
    written = 0
    for s, images, sigmas, y, result in shard_estimates(
            path, measurements=measurements, train=train, first_image=first_image, first_sigma=first_sigma,
            estimate_options=estimate_options, device=device, max_memory=max_memory, progress=progress,
            reads=reads):
        split = str(store["split"].values[s])
        n_i, n_s = y.shape[:2]
        truth = reads.clean(measurements, split)[images]  # (i, c, h, w)
        block = {"xhat": result.xhat.cpu().numpy().reshape(y.shape).astype(np.float32)}
        for key in result.diagnostics:
            value = result.diagnostics[key].cpu().numpy()
            block[key] = value.reshape(n_i, n_s, *value.shape[1:]).astype(store[key].dtype)
        block.update(shard_summaries(block["xhat"], y, truth, train, estimate_options, device=device,
                                     max_memory=max_memory))
        if has_diagnostics(store):
            block.update(diagnostic_reductions(block))
        zstore.write_region(path, {name: value[None] for name, value in block.items()},
                            {"split": slice(s, s + 1), "image": images, "sigma": sigmas})
        log.info("%s: split %s, images %d-%d, σ %s written", path, split, images.start,
                 images.stop - 1, ", ".join(f"{v:g}" for v in sigma_values[sigmas]))
        written += n_i * n_s
    return written


def compute_shard_job(shards: Sequence[Mapping[str, Any]], *, device: str = "cpu", max_memory: int = 2**31,
                      progress: bool = False) -> list[dict[str, Any]]:
    """Run the shards of one shard job in order (:func:`lemmse.plan.jobs.analytic_shard`'s ``shards``: each
    :func:`compute_shard`'s keywords plus its training set's ``data`` store and ``train_size``), in one
    process, loading a training set once for consecutive shards that share it.

    Returns one record per shard, for the job's marker: ``store``, ``first_image``, ``first_sigma``,
    ``measurements`` (estimates written: images × σ × splits) and the shard's own ``seconds`` and
    ``cpu_seconds`` (wall clock and CPU time of all threads, training-set load included), from
    which :mod:`lemmse.claims.timing` splits the job's benchmarked time among its shards.
    """
    from lemmse.data import load_split

    records, loaded, train, reads = [], None, None, ShardReads()
    for shard in shards:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if loaded != (shard["data"], shard["train_size"]):
            loaded = shard["data"], shard["train_size"]
            train = load_split(shard["data"], "train", count=shard["train_size"])
        written = compute_shard(shard["store"], measurements=shard["measurements"], train=train,
                                first_image=shard["first_image"], first_sigma=shard["first_sigma"],
                                estimate_options=shard["estimate_options"], device=device, max_memory=max_memory,
                                progress=progress, reads=reads)
        records.append({"store": shard["store"], "first_image": shard["first_image"],
                        "first_sigma": shard["first_sigma"], "measurements": written,
                        "seconds": time.perf_counter() - wall0, "cpu_seconds": time.process_time() - cpu0})
    return records


def shard_summaries(xhat: np.ndarray, y: np.ndarray, truth: np.ndarray, train: np.ndarray,
                    estimate_options: Mapping[str, Any], *, device: str = "cpu",
                    max_memory: int = 2**31) -> dict[str, np.ndarray]:
    """``by`` and the :data:`SUMMARIES` of one block (module docstring for the formulas).

    ``xhat``, ``y`` ``(i, s, c, h, w)``: the estimates as stored (float32) and their measurements;
    ``truth`` ``(i, c, h, w)``: the clean images; ``train`` ``(N, c, h, w)``: the estimator's training
    images; ``estimate_options``: the keywords the estimates were computed with (``task``, ``preinverse``,
    ``lam``, ``hole``, ``blur_std``), so that ``B`` is the estimator's ``B``. Returns ``by`` float32
    ``(i, s, c, h, w)`` and each summary float64 ``(i, s)``.
    """
    n_i, n_s = xhat.shape[:2]
    by = preinverted(y, estimate_options)  # float64
    distance, index = nearest_train(xhat.reshape(n_i * n_s, *xhat.shape[2:]), train, device=device,
                                    max_memory=max_memory)
    truth_distance, _ = nearest_train(truth, train, device=device, max_memory=max_memory)
    return {"by": by.astype(np.float32),
            "psnr_truth": psnr(xhat, truth[:, None]),
            "psnr_input": psnr(by, xhat),
            "nearest_train_distance": distance.reshape(n_i, n_s),
            "nearest_train_index": index.reshape(n_i, n_s).astype(np.float64),
            "truth_nearest_train_distance": np.repeat(truth_distance[:, None], n_s, axis=1)}


def diagnostic_reductions(maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`DIAGNOSTIC_REDUCTIONS` of per-pixel diagnostic maps ``(..., h, w)`` (as stored), float64 ``(...)``:
    minus the pixel means of both patch log-densities, and the number of distinct training images
    (``≥ 0``) in the ``source`` map."""
    source = np.asarray(maps["source"])
    distinct = np.array([len(np.unique(m[m >= 0])) for m in source.reshape(-1, *source.shape[-2:])], dtype=np.float64)
    return {"neg_log_density_patch_paper": -np.asarray(maps["patch_log_density_paper"], np.float64).mean(axis=(-2, -1)),
            "neg_log_density_patch_normalised": -np.asarray(maps["patch_log_density"], np.float64).mean(axis=(-2, -1)),
            "distinct_sources": distinct.reshape(source.shape[:-2])}


def preinverted(y: np.ndarray, estimate_options: Mapping[str, Any]) -> np.ndarray:
    """``B y`` in float64 for ``y (..., c, h, w)``, with the ``B`` of the estimator keywords ``estimate_options``
    (:func:`lemmse.estimators.estimate`'s ``task``, ``preinverse``, ``lam``, ``hole``, ``blur_std``)."""
    from lemmse.operators import preinvert

    return preinvert(y, estimate_options["task"], estimate_options.get("preinverse", "identity"),
                     estimate_options.get("lam"), hole=estimate_options.get("hole"),
                     blur_std=estimate_options.get("blur_std"))


def has_diagnostics(store) -> bool:
    """Whether an estimator store (an open dataset) was created with the LE-MMSE diagnostics (the
    99 %-mass ones aside: :func:`has_mass`)."""
    return all(name in store.data_vars for name in DIAGNOSTIC_DTYPES if name not in MASS_DIAGNOSTICS)


def has_mass(store) -> bool:
    """Whether an estimator store also holds the 99 %-mass diagnostics (their extra pass was run)."""
    return has_diagnostics(store) and all(name in store.data_vars for name in MASS_DIAGNOSTICS)


def required_values(store) -> tuple[str, ...]:
    """The variables every shard of an estimator store (an open dataset) writes and finalize checks:
    ``xhat``, ``by``, the :data:`SUMMARIES` and, on a store with diagnostics, the
    :data:`DIAGNOSTIC_REDUCTIONS`."""
    return ("xhat", "by", *SUMMARIES, *(DIAGNOSTIC_REDUCTIONS if has_diagnostics(store) else ()))


def finalize_store(path: str | os.PathLike) -> None:
    """Mark ``path`` complete after checking every shard's values were written (no NaN left in
    :func:`required_values`)."""
    ds = zstore.open_dataset(path, complete=False)
    absent = [name for name in required_values(ds) if name not in ds.data_vars]
    if absent:
        raise LemmseInputError(f"{path}: no variable {', '.join(absent)}: the store was created by an older "
                               "lemmse; delete it and rerun its template and shards")
    missing = {}
    for name in required_values(ds):
        values = ds[name].transpose("split", "image", "sigma", ...).values
        count = int(np.isnan(values).reshape(*values.shape[:3], -1).any(axis=-1).sum())
        if count:
            missing[name] = count
    if missing:
        raise LemmseInputError(f"{path}: (split, image, σ) values still missing: "
                               + ", ".join(f"{name} {count}" for name, count in missing.items())
                               + "; run every shard before finalizing")
    zstore.mark_complete(path)


def nearest_train(images: np.ndarray, train: np.ndarray, *, device: str | torch.device = "cpu",
                  max_memory: int = 2**31) -> tuple[np.ndarray, np.ndarray]:
    r"""For each image ``a`` of ``images (n, c, h, w)`` its RMS distance to the nearest training image and
    that image's index, ``(n,)`` float64 and ``(n,)`` int64::

        d(a) = min_k sqrt((1/P) Σ_p (a_p − t_{k,p})²),   k(a) = the first k attaining it

    in float64 from exact differences (``torch.cdist`` without the ``‖a‖² + ‖t‖² − 2⟨a, t⟩`` expansion,
    which loses the small distances of memorised estimates to cancellation), on ``device``, the
    training set in blocks that keep the working set under ``max_memory`` bytes (at most 256 MiB).
    """
    import torch

    n, pixels = images.shape[0], int(np.prod(images.shape[1:]))
    a = torch.as_tensor(np.asarray(images, dtype=np.float64).reshape(n, pixels), device=device)
    budget = min(max_memory, 2**28)
    rows = max(1, budget // (8 * (pixels + n)))
    best = torch.full((n,), float("inf"), dtype=torch.float64, device=device)
    index = torch.full((n,), -1, dtype=torch.long, device=device)
    for start in range(0, train.shape[0], rows):
        block = np.asarray(train[start : start + rows], dtype=np.float64).reshape(-1, pixels)
        d, k = torch.cdist(a, torch.as_tensor(block, device=device),
                           compute_mode="donot_use_mm_for_euclid_dist").min(dim=1)
        better = d < best
        best = torch.where(better, d, best)
        index = torch.where(better, k + start, index)
    return (best / np.sqrt(pixels)).cpu().numpy(), index.cpu().numpy()
