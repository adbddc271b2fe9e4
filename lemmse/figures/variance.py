r"""Fig. 4: per-pixel variance of the LE-MMSE over noise draws, B = I against B = A⁺.

The measurement store holds one noise draw per (image, σ), so this figure has a compute stage of
its own, :func:`compute_variance`, whose small store the figure reads:

``results/variance/{dataset}/{task}.zarr`` (see :meth:`StoreLayout.variance`)::

    variance  float32 (preinverse, image, h, w)     variance over the K draws (unbiased, K − 1),
                                                    averaged over channels
    mean      float32 (preinverse, image, c, h, w)  mean LE-MMSE estimate over the K draws
    truth     float32 (image, c, h, w)              the clean images (first n of the split)
    y         float32 (image, c, h, w)              the first draw's measurement (for display)
    preinverse str    ["identity", "pinv"]          (pre-inverse kinds of lemmse.operators)

attrs: dataset, task, split, sigma, draws, seed, patch, train_size, n_images, noise_recipe,
data_store. Draw ``k`` of image ``i`` uses ``z = default_rng(SeedSequence(seed, spawn_key=(id("variance"),
id(task), k))).standard_normal((n, C, H, W))[i]`` (float64), the same ``z`` for both pre-inverses,
and ``y = A x + σ z``; ``id`` is :func:`lemmse.data.measurements.stable_id`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from lemmse.errors import LemmseInputError
from lemmse.figures.inputs import FigureInputs

log = logging.getLogger(__name__)

VARIANCE_TASKS = ("inpainting", "deconvolution")
NOISE_RECIPE = ("z_k = numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(id('variance'), id(task), k)))"
                ".standard_normal((n, C, H, W)); y = A x + sigma z_k (float64, not clipped); id = lemmse.data.measurements.stable_id")


def compute_variance(out_path: str | os.PathLike, data_store: str | os.PathLike, *, task: str, sigma: float,
                     draws: int = 8, seed: int = 0, patch: int = 5, train_size: int | None = None,
                     n_images: int = 2, split: str = "test", preinverses: Sequence[str] = ("identity", "pinv"),
                     hole: int | None = None, blur_std: float | None = None, device: str = "cpu") -> Path:
    """LE-MMSE on ``draws`` seeded noise draws of the first ``n_images`` images of ``split``, for each
    pre-inverse kind; writes the variance store at ``out_path`` atomically (see the module doc)."""
    import torch

    from lemmse.data import load_split
    from lemmse.data.measurements import stable_id, validate_sigmas
    from lemmse.estimators import estimate
    from lemmse.operators import make_problem
    from lemmse.store import save_dataset

    import xarray as xr

    (sigma,) = validate_sigmas([sigma])
    if isinstance(draws, bool) or int(draws) != draws or draws < 2:
        raise LemmseInputError(f"draws={draws!r} must be an integer >= 2 (a variance needs two draws)")
    if isinstance(n_images, bool) or int(n_images) != n_images or n_images < 1:
        raise LemmseInputError(f"n_images={n_images!r} must be an integer >= 1")
    train = load_split(data_store, "train", train_size)
    x = load_split(data_store, split, n_images)
    n, c, h, w = x.shape
    problem = make_problem(task, (h, w), hole=hole, blur_std=blur_std)
    for kind in preinverses:
        problem.preinverse(kind)  # refuses a pre-inverse the task does not take, before any work
    xt = torch.from_numpy(x.astype(np.float64))
    with torch.no_grad():
        ax = problem.A(xt)
    ys = []
    for k in range(int(draws)):
        ss = np.random.SeedSequence(int(seed), spawn_key=(stable_id("variance"), stable_id(task), k))
        z = np.random.default_rng(ss).standard_normal((n, c, h, w))
        ys.append((ax.numpy() + sigma * z).astype(np.float32))
    y = np.concatenate(ys)  # (K n, C, H, W), draw-major
    means, variances = [], []
    for kind in preinverses:
        out = estimate(torch.from_numpy(train), torch.from_numpy(y), task=task, estimator="lemmse", sigma=sigma,
                       preinverse=kind, patch=int(patch), hole=hole, blur_std=blur_std, device=device).xhat
        out = out.detach().cpu().numpy().astype(np.float64).reshape(int(draws), n, c, h, w)
        means.append(out.mean(axis=0))
        variances.append(out.var(axis=0, ddof=1).mean(axis=1))
        log.info("%s %s: mean per-pixel variance %.3g", task, kind, variances[-1].mean())
    ds = xr.Dataset(
        {"variance": (("preinverse", "image", "h", "w"), np.stack(variances).astype(np.float32)),
         "mean": (("preinverse", "image", "c", "h", "w"), np.stack(means).astype(np.float32)),
         "truth": (("image", "c", "h", "w"), x.astype(np.float32)),
         "y": (("image", "c", "h", "w"), ys[0])},
        coords={"preinverse": np.array(list(preinverses)), "image": np.arange(n)},
        attrs={"dataset": str(xr.open_zarr(data_store).attrs.get("dataset", Path(data_store).stem)), "task": task,
               "split": split, "sigma": float(sigma), "draws": int(draws), "seed": int(seed), "patch": int(patch),
               "train_size": int(len(train)), "n_images": int(n), "noise_recipe": NOISE_RECIPE,
               "data_store": str(data_store)})
    save_dataset(ds, out_path)
    return Path(out_path)


def variance_stores(inputs: FigureInputs) -> dict[str, Path]:
    """task -> variance store: the explicit ``inputs.variance_stores``, else the existing default paths."""
    if inputs.variance_stores is not None:
        return {t: Path(p) for t, p in inputs.variance_stores.items()}
    tables = inputs.analytic if not inputs.analytic.empty else inputs.metrics
    if tables.empty:
        return {}
    datasets = sorted(tables["dataset"].dropna().unique().tolist())
    if len(datasets) != 1:
        raise LemmseInputError(f"fig4_preinverse_variance: name the variance stores (the tables hold the data sets "
                               f"{datasets}, so the store to read is ambiguous)")
    dataset = datasets[0]
    found = {t: inputs.stores.variance(dataset, t) for t in VARIANCE_TASKS}
    return {t: p for t, p in found.items() if p.exists()}


def select_fig4(inputs: FigureInputs) -> dict[str, Path]:
    stores = variance_stores(inputs)
    if not stores:
        raise LemmseInputError("fig4_preinverse_variance: no variance store (results/variance/{dataset}/{task}.zarr for "
                               "inpainting or deconvolution); run the variance stage (lemmse.figures.variance."
                               "compute_variance) first")
    missing = [str(p) for p in stores.values() if not Path(p).exists()]
    if missing:
        raise LemmseInputError(f"fig4_preinverse_variance: variance store(s) missing: {', '.join(missing)}")
    return stores


def make_fig4_preinverse_variance(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per task: truth, one y, then for B = I and B = A⁺ the mean estimate and the per-pixel variance over draws."""
    from lemmse.figures import style
    from lemmse.store import open_dataset

    stores = select_fig4(inputs)
    tasks = [t for t in VARIANCE_TASKS if t in stores] + [t for t in stores if t not in VARIANCE_TASKS]
    opened = {t: open_dataset(stores[t]) for t in tasks}
    pres = list(opened[tasks[0]]["preinverse"].values)
    names = {"identity": "B = I", "pinv": "B = A⁺", "adjoint": "B = Aᵀ"}
    fig, axes = style.new_figure(len(tasks), 2 + 2 * len(pres), panel=(1.5, 1.7))
    for r, task in enumerate(tasks):
        ds = opened[task]
        image = 0
        var = ds["variance"].isel(image=image).values
        vmax = float(np.nanmax(var)) or 1.0
        style.image_panel(axes[r, 0], ds["truth"].isel(image=image).values, "truth")
        style.image_panel(axes[r, 1], ds["y"].isel(image=image).values, f"y (σ = {ds.attrs['sigma']:g})")
        axes[r, 0].set_ylabel(task, fontsize=8.5)
        handle = None
        for j, pre in enumerate(ds["preinverse"].values):
            label = names.get(str(pre), str(pre))
            style.image_panel(axes[r, 2 + 2 * j], ds["mean"].sel(preinverse=pre).isel(image=image).values,
                              f"mean LE-MMSE, {label}")
            v = ds["variance"].sel(preinverse=pre)
            handle = style.image_panel(axes[r, 3 + 2 * j], v.isel(image=image).values,
                                       f"variance, {label}\nmean {float(v.mean()):.2e}", cmap="inferno", vmin=0.0, vmax=vmax)
        fig.colorbar(handle, ax=axes[r, -1], label="variance over draws", shrink=0.85, format="%.0e")
    first = opened[tasks[0]].attrs
    style.save(fig, out_png, config_label=config_label,
               title=(f"Fig. 4 — variance over {first['draws']} noise draws ({first['dataset']}, P = {first['patch']}, "
                      f"N = {first['train_size']})"))
