"""A tiny synthetic world for the figure and claims tests: tables following lemmse.tables and the
stores they point to (8×8 digits, 2 images per split, 3 σ), built in a temporary folder.

The numbers are synthetic (shaped like the paper's trends) and only exercise the plotting code.
"""
from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from lemmse.tables import ANALYTIC_KEYS, ANALYTIC_VALUES, METRICS_KEYS, METRICS_VALUES

DATASET, OOD = "digits", "faces"
SIGMAS = (0.02, 0.1, 0.5)
PROBLEMS = (("denoising", "identity"), ("inpainting", "identity"), ("inpainting", "pinv"),
            ("deconvolution", "identity"), ("deconvolution", "pinv"))
ARCHS = ("unet", "resnet", "patchmlp")
PATCHES = (3, 5)
TRAIN_SIZES = (5, 10)
N_EVAL = 2
#: The training σ spec of every fixture network (the metrics table's train_sigma, the sigma{spec} folder).
TRAIN_SIGMA = "0.01-1"
#: The problem of the OOD rows (UNets trained on DATASET, evaluated on OOD measurements).
OOD_PROBLEM = ("denoising", "identity")


def metrics_table(rng: np.random.Generator, *, ood: bool = True, smoothed: bool = True) -> pd.DataFrame:
    rows = []
    evals = (DATASET, OOD) if ood else (DATASET,)
    estimators = (("lemmse", 0.0), ("smoothed", 0.05)) if smoothed else (("lemmse", 0.0),)
    for (task, pre), arch, patch, n, (est, s), sigma, split, image, ev in itertools.product(
            PROBLEMS, ARCHS, PATCHES, TRAIN_SIZES, estimators, SIGMAS, ("train", "test"), range(N_EVAL), evals):
        if ev != DATASET and (task, pre, arch, est) != (*OOD_PROBLEM, "unet", "lemmse"):
            continue  # the OOD study: UNets for denoising, against the LE-MMSE
        nld = -10.0 * np.log10(sigma) + (5.0 if split == "test" else 0.0) + (8.0 if ev != DATASET else 0.0)
        agree = 32.0 - 0.3 * nld + (1.0 if est == "smoothed" else 0.0) - 0.4 * patch + rng.normal(0, 0.5)
        truth = 30.0 - 12.0 * sigma ** 0.5 - (3.0 if split == "test" else 0.0) + rng.normal(0, 0.5)
        rows.append(dict(dataset=DATASET, eval_dataset=ev, task=task, preinverse=pre, arch=arch, patch=patch,
                         train_size=n, estimator=est, smoothing=s, sigma=sigma, split=split, image=image,
                         train_sigma=TRAIN_SIGMA, psnr_net_truth=truth - 0.5, psnr_est_truth=truth, psnr_net_est=agree,
                         psnr_input_est=15.0 + rng.normal(), neg_log_density_image_paper=nld + rng.normal(0, 1),
                         neg_log_density_patch_paper=nld / 10 + patch,
                         neg_log_density_image_normalised=-nld + rng.normal(0, 1),
                         neg_log_density_patch_normalised=-nld / 10 - patch,
                         mass99_observed_mean=1 + 300 * sigma ** 2, mass99_observed_median=1 + 100 * sigma ** 2))
    return pd.DataFrame(rows, columns=[*METRICS_KEYS, *METRICS_VALUES])


def analytic_table(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    combos = [("mmse", 0), ("emmse", 0)] + [("lemmse", p) for p in PATCHES]
    for (task, pre), (est, patch), n, sigma, split, image in itertools.product(
            PROBLEMS, combos, TRAIN_SIZES, SIGMAS, ("train", "test"), range(N_EVAL)):
        lem = est == "lemmse"
        dist = {"mmse": 0.01 * sigma, "emmse": 0.05 * sigma}.get(est, 0.2)
        rows.append(dict(dataset=DATASET, eval_dataset=DATASET, task=task, preinverse=pre, estimator=est,
                         smoothing=0.0, patch=patch, train_size=n, sigma=sigma, split=split, image=image,
                         psnr_est_truth=28.0 - 10 * sigma - 0.5 * patch * (1 - 4 * sigma) + rng.normal(0, 0.3),
                         nearest_train_distance=dist + 0.01 * rng.random(),
                         truth_nearest_train_distance=0.0 if split == "train" else 0.25,
                         neg_log_density_image_paper=(-10 * np.log10(sigma)) if lem else np.nan,
                         neg_log_density_patch_paper=(patch + 2 * (split == "test") - np.log(sigma)) if lem else np.nan,
                         neg_log_density_image_normalised=(10 * np.log10(sigma)) if lem else np.nan,
                         neg_log_density_patch_normalised=(-patch + np.log(sigma)) if lem else np.nan,
                         mass99_observed_mean=(1 + 400 * sigma ** 2 * (3 if pre == "pinv" else 1)) if lem else np.nan,
                         mass99_observed_median=(1 + 200 * sigma ** 2 * (3 if pre == "pinv" else 1)) if lem else np.nan,
                         distinct_sources=3.0 if lem else np.nan))
    return pd.DataFrame(rows, columns=[*ANALYTIC_KEYS, *ANALYTIC_VALUES])


def memorisation_table(analytic: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """A stand-in memorisation table (:mod:`lemmse.memorisation`) for the E-MMSE rows of ``analytic``: Fig. 3
    reads each output's nearest shifted training image from it (random distances, indices below N and
    shifts of an 8×8 image)."""
    rng = np.random.default_rng(seed)
    e = analytic[analytic["estimator"] == "emmse"]
    keys = e[["dataset", "eval_dataset", "task", "preinverse", "estimator", "patch", "train_size", "sigma", "split",
              "image"]].drop_duplicates().reset_index(drop=True)
    n = len(keys)
    return keys.assign(distance=rng.random(n), distance_unshifted=rng.random(n), truth_distance=rng.random(n),
                       nearest_index=rng.integers(0, np.minimum(keys["train_size"], 1000)),
                       nearest_shift_h=rng.integers(0, 8, n), nearest_shift_w=rng.integers(0, 8, n))


def _save(ds: xr.Dataset, *paths: Path) -> None:
    """Write ``ds`` to the first of ``paths``; the others (the same stand-in at another N) get a copy of
    that store, byte for byte, which costs a tenth of writing it again."""
    from lemmse.store import save_dataset

    save_dataset(ds, paths[0])
    for path in paths[1:]:
        shutil.copytree(paths[0], path)


def _cube(clean: dict[str, np.ndarray], rng, scale: float) -> np.ndarray:
    """(split, image, sigma, c, h, w): the clean images plus noise growing with σ."""
    out = np.stack([np.stack([clean[s] + scale * sig * rng.standard_normal(clean[s].shape) for sig in SIGMAS], axis=1)
                    for s in ("train", "test")])
    return np.clip(out, 0, 1).astype(np.float32)


def _preinverted(meas: Path, preinverse: str) -> np.ndarray:
    """``B y`` of every measurement (the estimator shards' ``by``): stand-in stores hold the true one."""
    from lemmse.operators import preinvert
    from lemmse.store import open_dataset

    m = open_dataset(meas)
    y = m["y"].sel(split=["train", "test"]).isel(image=slice(0, N_EVAL)).transpose(
        "split", "image", "sigma", "c", "h", "w").values
    return preinvert(y, m.attrs["task"], preinverse).astype(np.float32)


def build_stores(results: Path, rng: np.random.Generator) -> None:
    """The stores the fixture tables point to. Estimator stores hold what the figures read of them: ``xhat``,
    ``by`` (the true ``B y``), ``nearest_train_index`` (random) and, for the LE-MMSE, diagnostic maps."""
    from lemmse.data import build_measurements, load_clean, prepare_dataset

    data = prepare_dataset(DATASET, results / "data" / f"{DATASET}.zarr", resolution=8, train_size=10, test_size=5)
    coords = {"split": ["train", "test"], "image": np.arange(N_EVAL), "sigma": np.array(SIGMAS)}
    dims = ("split", "image", "sigma", "c", "h", "w")
    for task in sorted({t for t, _ in PROBLEMS}):
        meas = build_measurements(results / "measurements" / DATASET / f"{task}.zarr", data, task=task,
                                  sigmas=SIGMAS, n_eval=N_EVAL)
        clean = {s: load_clean(meas, s) for s in ("train", "test")}
        for pre in [p for t, p in PROBLEMS if t == task]:
            for est, patch in [("mmse", 0), ("emmse", 0)] + [("lemmse", p) for p in PATCHES]:
                nearest = rng.integers(0, min(TRAIN_SIZES), (2, N_EVAL, len(SIGMAS))).astype(np.float64)
                ds = xr.Dataset({"xhat": (dims, _cube(clean, rng, 0.3)), "by": (dims, _preinverted(meas, pre)),
                                 "nearest_train_index": (dims[:3], nearest)}, coords=coords)
                if est == "lemmse":
                    shape = (2, N_EVAL, len(SIGMAS), 8, 8)
                    grow = np.array(SIGMAS)[None, None, :, None, None]
                    ds["mass99"] = (dims[:3] + ("h", "w"),
                                    np.round(1 + 200 * grow ** 2 * rng.random(shape)).astype(np.float32))
                    src = rng.integers(0, 10, size=shape).astype(np.float32)
                    src[rng.random(shape) < grow * 1.5] = -1
                    ds["source"] = (dims[:3] + ("h", "w"), src)
                    distinct = [len(np.unique(m[m >= 0])) for m in src.reshape(-1, 8, 8)]
                    ds["distinct_sources"] = (dims[:3], np.reshape(distinct, shape[:3]).astype(np.float64))
                    ds["source_image"] = (dims[:3] + ("h", "w"), src)
                    for name in ("patch_log_density", "patch_log_density_paper"):
                        ds[name] = (dims[:3] + ("h", "w"), rng.normal(size=shape))
                    for name in ("image_log_density", "image_log_density_paper", "mass99_observed_mean",
                                 "mass99_observed_median"):
                        ds[name] = (dims[:3], rng.normal(size=shape[:3]))
                _save(ds, *(results / "analytic" / DATASET / task / pre / est / f"P{patch}" / f"N{n}" / f"{DATASET}.zarr"
                            for n in TRAIN_SIZES))
            for arch, patch in itertools.product(ARCHS, PATCHES):
                ds = xr.Dataset({"xhat": (dims, _cube(clean, rng, 0.35))}, coords=coords)
                _save(ds, *(results / "networks" / DATASET / task / pre / arch / f"P{patch}" / f"N{n}"
                            / f"sigma{TRAIN_SIGMA}" / f"{DATASET}.zarr" for n in TRAIN_SIZES))
    # the OOD study: UNets and LE-MMSE of DATASET on the measurements of OOD (another data set)
    other = prepare_dataset(OOD, results / "data" / f"{OOD}.zarr", resolution=8, train_size=10, test_size=5)
    task, pre = OOD_PROBLEM
    meas = build_measurements(results / "measurements" / OOD / f"{task}.zarr", other, task=task, sigmas=SIGMAS,
                              n_eval=N_EVAL)
    clean = {s: load_clean(meas, s) for s in ("train", "test")}
    for patch, n in itertools.product(PATCHES, TRAIN_SIZES):
        _save(xr.Dataset({"xhat": (dims, _cube(clean, rng, 0.3))}, coords=coords),
              results / "analytic" / DATASET / task / pre / "lemmse" / f"P{patch}" / f"N{n}" / f"{OOD}.zarr")
        _save(xr.Dataset({"xhat": (dims, _cube(clean, rng, 0.35))}, coords=coords),
              results / "networks" / DATASET / task / pre / "unet" / f"P{patch}" / f"N{n}" / f"sigma{TRAIN_SIGMA}"
              / f"{OOD}.zarr")
