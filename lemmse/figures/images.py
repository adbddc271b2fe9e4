"""Image figures read from the stores: Fig. 2 (memorisation), 13 (gallery), 20–22 (mass), 23 (patchwork).

The tables say which stores exist; the pixels come from the analytic / network / measurement /
data stores (never recomputed). ``B y`` in the gallery is the pre-inverse applied to the stored
``y`` (a linear map, not an estimator).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lemmse.errors import LemmseInputError
from lemmse.figures import style
from lemmse.figures.curves import describe, reference_slice
from lemmse.figures.inputs import (ARCH_ORDER, FigureInputs, fix, in_distribution, mean_by, ordered, problems,
                                   reference_value, require)


def _open(path: Path):
    from lemmse.store import open_dataset

    return open_dataset(path)


def pick(ds, var: str, *, split: str, image: int, sigma: float) -> np.ndarray:
    """``ds[var]`` at one (split, image, σ) as a numpy array (σ matched to 1e-9 relative)."""
    sig = ds["sigma"].values
    idx = np.flatnonzero(np.isclose(sig, float(sigma), rtol=1e-9, atol=0.0))
    if len(idx) != 1:
        raise LemmseInputError(f"σ = {sigma:g} is not in the store (it has {', '.join(f'{s:g}' for s in sig)})")
    return np.asarray(ds[var].sel(split=split).isel(sigma=int(idx[0])).sel(image=image).values)


def pick_sigmas(sigmas, count: int) -> list[float]:
    """``count`` σ spread over the sorted list (all when there are fewer)."""
    sig = sorted(set(float(s) for s in sigmas))
    if len(sig) <= count:
        return sig
    return [sig[i] for i in np.unique(np.round(np.linspace(0, len(sig) - 1, count)).astype(int))]


def apply_preinverse(inputs: FigureInputs, task: str, preinverse: str, y: np.ndarray) -> np.ndarray:
    import torch

    from lemmse.operators import make_problem

    kind, lam = inputs.preinverse_kind(preinverse)
    problem = make_problem(task, (y.shape[-2], y.shape[-1]))
    with torch.no_grad():
        b = problem.preinverse(kind, lam)(torch.from_numpy(y[None].astype(np.float64)))
    return b[0].numpy()


# ---------------------------------------------------------------------------------------------- fig 2
MEMO_ESTIMATORS = ("mmse", "emmse", "lemmse")


def select_fig2(inputs: FigureInputs):
    a = in_distribution(inputs.analytic)
    a = a[a["task"].isin(["denoising", "deconvolution"]) & a["estimator"].isin(MEMO_ESTIMATORS)]
    a = a[a["preinverse"].map(inputs.is_agnostic)] if not a.empty else a
    require(a, "analytic MMSE / E-MMSE / LE-MMSE rows for denoising or deconvolution with B = I", "fig2_memorisation")
    if "mmse" not in set(a["estimator"]):
        raise LemmseInputError(f"fig2_memorisation: needs analytic rows of both mmse and lemmse (has {sorted(set(a['estimator']))})")
    # the memorisation slice: where the MMSE was computed (LE-MMSE stores of other sizes abound)
    dataset = reference_value(fix(a, estimator="mmse"), "dataset")
    a = fix(a, dataset=dataset)
    train_size = reference_value(fix(a, estimator="mmse"), "train_size")
    a = fix(a, train_size=train_size)
    have = set(a["estimator"])
    if "mmse" not in have or "lemmse" not in have:
        raise LemmseInputError(f"fig2_memorisation: needs analytic rows of both mmse and lemmse (has {sorted(have)})")
    patch = reference_value(fix(a, estimator="lemmse"), "patch")
    a = a[(a["estimator"] != "lemmse") | (a["patch"] == patch)]
    return a, {"dataset": dataset, "train_size": train_size, "patch": patch}


def make_fig2_memorisation(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per task: y, MMSE, E-MMSE, LE-MMSE, the training image nearest to the MMSE output, the truth (one test
    image at a small σ), and the distance of each estimator's output to the training set against σ."""
    a, chosen = select_fig2(inputs)
    tasks = [t for t in ("denoising", "deconvolution") if t in set(a["task"])]
    estimators = [e for e in MEMO_ESTIMATORS if e in set(a["estimator"])]
    ncols = len(estimators) + 4
    fig, axes = style.new_figure(len(tasks), ncols, panel=(1.55, 2.0),
                                 gridspec_kw={"width_ratios": [1.0] * (ncols - 1) + [2.2]})
    train = None
    for row, task in enumerate(tasks):
        sub = fix(a, task=task)
        pre = sub["preinverse"].iloc[0]
        sub = fix(sub, preinverse=pre)
        split = "test" if "test" in set(sub["split"]) else "train"
        sigma = pick_sigmas(sub["sigma"], 4)[min(1, sub["sigma"].nunique() - 1)]
        image = int(sorted(fix(sub, split=split)["image"].unique())[0])
        meas = inputs.stores.measurements(chosen["dataset"], task)
        y = pick(_open(meas), "y", split=split, image=image, sigma=sigma)
        from lemmse.data import load_clean, load_split

        truth = load_clean(meas, split)[image]
        if train is None:
            train = load_split(inputs.stores.data(chosen["dataset"]), "train", int(chosen["train_size"]))
        style.image_panel(axes[row, 0], y, f"y ({task})\nσ = {sigma:g}")
        mmse_out = None
        for col, est in enumerate(estimators, start=1):
            patch = chosen["patch"] if est == "lemmse" else 0
            path = inputs.stores.analytic(chosen["dataset"], task, pre, est, patch, chosen["train_size"], chosen["dataset"])
            out = pick(_open(path), "xhat", split=split, image=image, sigma=sigma)
            mmse_out = out if est == "mmse" else mmse_out
            dist = fix(sub, estimator=est, split=split, image=image)
            dist = dist[np.isclose(dist["sigma"], sigma)]["nearest_train_distance"]
            d = f"\nd_train = {dist.iloc[0]:.3f}" if len(dist) else ""
            style.image_panel(axes[row, col], out, f"{style.estimator_label(est)}{d}")
        ref = mmse_out if mmse_out is not None else truth
        nearest = int(np.argmin(((train - ref[None]) ** 2).reshape(len(train), -1).mean(axis=1)))
        style.image_panel(axes[row, len(estimators) + 1], train[nearest], f"nearest training\nimage (#{nearest})")
        style.image_panel(axes[row, len(estimators) + 2], truth, f"truth ({split} #{image})")
        ax = axes[row, -1]
        for est in estimators:
            stats = mean_by(fix(sub, estimator=est, split=split), ["sigma"], "nearest_train_distance")
            ax.plot(stats["sigma"], stats["mean"], marker="o", markersize=3, color=style.estimator_color(est),
                    label=style.estimator_label(est))
        ref_d = mean_by(fix(sub, estimator=estimators[0], split=split), ["sigma"], "truth_nearest_train_distance")
        ax.plot(ref_d["sigma"], ref_d["mean"], color="0.5", linestyle=":", label="truth")
        style.sigma_axis(ax, sub["sigma"])
        ax.set_xlabel("σ")
        ax.set_ylabel("RMS distance to the\nnearest training image")
        ax.set_title(f"distance to the training set ({split}, mean)")
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 2 — memorisation ({chosen['dataset']}, N = {chosen['train_size']}, LE-MMSE P = {chosen['patch']})")


# --------------------------------------------------------------------------------------------- fig 13
def select_fig13(inputs: FigureInputs):
    m = in_distribution(fix(inputs.metrics, estimator="lemmse"))
    m, chosen = reference_slice(require(m, "metrics rows of networks against the LE-MMSE", "fig13_gallery"),
                                "fig13_gallery", free=("arch",))
    return m, chosen


def make_fig13_gallery(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per problem and split: y, B y, each architecture's output, LE-MMSE, truth (one image, one σ)."""
    m, chosen = select_fig13(inputs)
    probs = problems(m)
    archs = ordered(m["arch"], ARCH_ORDER)
    sigma = pick_sigmas(m["sigma"], 3)[len(pick_sigmas(m["sigma"], 3)) // 2]
    rows = [(task, pre, split) for task, pre in probs for split in ordered(fix(m, task=task, preinverse=pre)["split"], ("train", "test"))]
    ncols = 4 + len(archs)
    fig, axes = style.new_figure(len(rows), ncols, panel=(1.35, 1.5))
    from lemmse.data import load_clean

    ds, n, p = chosen["dataset"], chosen["train_size"], chosen["patch"]
    for r, (task, pre, split) in enumerate(rows):
        part = fix(m, task=task, preinverse=pre, split=split)
        image = int(sorted(part["image"].unique())[0])
        meas = inputs.stores.measurements(ds, task)
        y = pick(_open(meas), "y", split=split, image=image, sigma=sigma)
        truth = load_clean(meas, split)[image]
        est = pick(_open(inputs.stores.analytic(ds, task, pre, "lemmse", p, n, ds)), "xhat", split=split, image=image,
                   sigma=sigma)
        panels = [(y, "y"), (apply_preinverse(inputs, task, pre, y), "B y")]
        for arch in archs:
            if fix(part, arch=arch).empty:  # this architecture was not trained for this problem
                panels.append((None, f"{style.arch_label(arch)}\n(not trained here)"))
                continue
            out = pick(_open(inputs.stores.network(ds, task, pre, arch, p, n, ds)), "xhat", split=split, image=image,
                       sigma=sigma)
            row = fix(part, arch=arch, image=image)
            row = row[np.isclose(row["sigma"], sigma)]["psnr_net_est"]
            panels.append((out, style.arch_label(arch) + (f"\n{row.iloc[0]:.1f} dB to LE-MMSE" if len(row) else "")))
        panels += [(est, "LE-MMSE"), (truth, "truth")]
        for c, (img, title) in enumerate(panels):
            if img is None:
                axes[r, c].axis("off")
                axes[r, c].set_title(title, fontsize=7, color="0.4")
                continue
            style.image_panel(axes[r, c], img, title)
        label = inputs.problem_label(task, pre).replace(", ", "\n")
        axes[r, 0].set_ylabel(f"{label}\n{split} #{image}", fontsize=7.5)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 13 — outputs at σ = {sigma:g} ({describe(chosen)})")


# ------------------------------------------------------------------------------------------ fig 20-22
MASS_STATISTICS = ("mass99_observed_mean", "mass99_observed_median")


def select_fig20_22(inputs: FigureInputs):
    a = in_distribution(fix(inputs.analytic, estimator="lemmse")).dropna(subset=list(MASS_STATISTICS))
    a, chosen = reference_slice(require(a, "analytic LE-MMSE rows with mass99_observed_mean/median", "fig20_22_mass"),
                                "fig20_22_mass", free=("arch",))
    return a, chosen


def make_fig20_22_mass(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Left: the number of patches holding 99 % of the LE-MMSE weight over the OBSERVED pixels (stratum rank
    > 0; at fully hidden pixels it is ⌈0.99·D·S₀⌉ by construction) — its per-image mean (top) and median
    (bottom), averaged over images — against σ (B = I solid, physics-aware dash-dot); right: per-pixel maps of
    the count for one test image at a few σ (log colour scale)."""
    a, chosen = select_fig20_22(inputs)
    probs = problems(a)[:4]
    split = "test" if "test" in set(a["split"]) else "train"
    sigmas = pick_sigmas(a["sigma"], 4)
    fig = style.plt.figure(figsize=(4.2 + 1.5 * len(sigmas), max(4.4, 1.55 * len(probs))), layout="constrained")
    grid = fig.add_gridspec(max(len(probs), 2), 1 + len(sigmas), width_ratios=[2.6] + [1] * len(sigmas))
    half = max(len(probs), 2) // 2
    for row, (statistic, rows) in enumerate(zip(MASS_STATISTICS, (slice(0, half), slice(half, None)))):
        ax = fig.add_subplot(grid[rows, 0])
        for task, pre in problems(a):
            stats = mean_by(fix(a, task=task, preinverse=pre, split=split), ["sigma"], statistic)
            ax.plot(stats["sigma"], stats["mean"], marker="o", markersize=3.5, color=style.TASK_COLORS.get(task, "0.4"),
                    linestyle=style.AGNOSTIC_STYLE if inputs.is_agnostic(pre) else style.AWARE_STYLE,
                    label=inputs.problem_label(task, pre))
        style.sigma_axis(ax, a["sigma"])
        ax.set_yscale("log")
        ax.set_ylabel(style.MASS_OBSERVED_LABEL.format(statistic=statistic.rsplit("_", 1)[1]), fontsize=7.5)
        if row == 0:
            ax.set_title(f"Fig. 20 — mass concentration ({split} images)")
            ax.legend(fontsize=7)
    maps = {}
    ds, n, p = chosen["dataset"], chosen["train_size"], chosen["patch"]
    for r, (task, pre) in enumerate(probs):
        store = _open(inputs.stores.analytic(ds, task, pre, "lemmse", p, n, ds))
        image = int(sorted(fix(a, task=task, preinverse=pre, split=split)["image"].unique())[0])
        for c, s in enumerate(sigmas):
            maps[r, c] = pick(store, "mass99", split=split, image=image, sigma=s).astype(np.float64)
    hi = max(float(np.nanmax(v)) for v in maps.values()) if maps else 1.0
    norm = style.log_norm(1.0, max(hi, 10.0))
    handle = None
    for (r, c), arr in maps.items():
        axm = fig.add_subplot(grid[r, 1 + c])
        handle = axm.imshow(np.maximum(arr, 1.0), cmap="magma", norm=norm, interpolation="nearest")
        axm.set_xticks([])
        axm.set_yticks([])
        axm.grid(False)
        if r == 0:
            axm.set_title(f"σ = {sigmas[c]:g}")
        if c == 0:
            axm.set_ylabel(inputs.problem_label(*probs[r]).replace(", ", "\n"), fontsize=7.5)
    if handle is not None:
        fig.colorbar(handle, ax=fig.axes[2:], label="patches holding 99 % (per pixel, every pixel)", shrink=0.8)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 20–22 — mass ({describe(chosen)})")


# --------------------------------------------------------------------------------------------- fig 23
def select_fig23(inputs: FigureInputs):
    """In-distribution LE-MMSE rows of the reference data set and N, every patch size (key columns only)."""
    a = in_distribution(fix(inputs.analytic, estimator="lemmse"))
    a, chosen = reference_slice(require(a, "analytic LE-MMSE rows", "fig23_patchwork"), "fig23_patchwork",
                                free=("arch", "patch"))
    return a, chosen


def fig23_patches(a) -> dict[tuple[str, str], int]:
    """(task, pre-inverse) -> the largest P the rows hold for it whose store has source maps
    (``distinct_sources`` finite; rows of planned tables, all NaN, count as having them)."""
    have = a if a["distinct_sources"].isna().all() else a.dropna(subset=["distinct_sources"])
    return {(t, p): int(fix(have, task=t, preinverse=p)["patch"].max()) for t, p in problems(have)}


def make_fig23_patchwork(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per problem, at the largest P the sweep has for it: the LE-MMSE estimate and its ``source`` map (the
    training image owning a SINGLE patch with ≥ 50 % of the weight at each pixel, paper §D.5; white = none)
    at a few σ, for one test image."""
    from matplotlib.colors import ListedColormap

    a, chosen = select_fig23(inputs)
    patch_of = fig23_patches(a)
    probs = list(patch_of)[:3]
    split = "test" if "test" in set(a["split"]) else "train"
    sigmas = pick_sigmas(a["sigma"], 4)
    fig, axes = style.new_figure(2 * len(probs), len(sigmas) + 1, panel=(1.4, 1.45))
    ds, n = chosen["dataset"], chosen["train_size"]
    from lemmse.data import load_clean

    base = style.plt.get_cmap("tab20")
    colours = ListedColormap([base(i % 20) for i in range(max(int(n), 1))]).with_extremes(under="white")
    for k, (task, pre) in enumerate(probs):
        p = patch_of[task, pre]
        store = _open(inputs.stores.analytic(ds, task, pre, "lemmse", p, n, ds))
        image = int(sorted(fix(a, task=task, preinverse=pre, patch=p, split=split)["image"].unique())[0])
        truth = load_clean(inputs.stores.measurements(ds, task), split)[image]
        style.image_panel(axes[2 * k, 0], truth, f"truth ({split} #{image})")
        axes[2 * k, 0].set_ylabel(inputs.problem_label(task, pre).replace(", ", "\n") + f"\nP = {p}", fontsize=7.5)
        axes[2 * k + 1, 0].axis("off")
        axes[2 * k + 1, 0].text(0.5, 0.5, "source image\nper pixel: one\ntraining patch\nholds ≥ 50 %\n(white: none)",
                                ha="center",
                                va="center", fontsize=7.5, transform=axes[2 * k + 1, 0].transAxes)
        for c, s in enumerate(sigmas, start=1):
            style.image_panel(axes[2 * k, c], pick(store, "xhat", split=split, image=image, sigma=s),
                              f"LE-MMSE, σ = {s:g}")
            src = pick(store, "source", split=split, image=image, sigma=s)
            owned = float(np.mean(src >= 0)) * 100
            distinct = len(np.unique(src[src >= 0]))
            axes[2 * k + 1, c].imshow(np.where(src >= 0, src, -1), cmap=colours, vmin=0, vmax=max(int(n) - 1, 1),
                                      interpolation="nearest")
            axes[2 * k + 1, c].set_xticks([])
            axes[2 * k + 1, c].set_yticks([])
            axes[2 * k + 1, c].grid(False)
            axes[2 * k + 1, c].set_title(f"{owned:.0f} % owned, {distinct} images", fontsize=7)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 23 — the LE-MMSE patchwork, single-patch source map ({describe(chosen)}, largest P per problem)")
