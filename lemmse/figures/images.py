"""The drawing layer for the figures that show pixels: Fig. 1 (overview), 2 (memorisation), 3 (E-MMSE,
Cor. 3.7), 7 (out of distribution), 13–16 (gallery), 20–22 (mass), 23 and 24 (patchwork).

The :class:`~lemmse.figures.select.Selection` says which (store, split, image, σ) each panel shows;
the pixels come from the analytic / network / measurement / data stores (never recomputed): ``B y``
in the gallery is the estimator store's ``by`` (its shards applied the estimator's own B to ``y``),
and Fig. 2's nearest training image is the one the MMSE store's ``nearest_train_index`` names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lemmse.errors import LemmseInputError
from lemmse.figures import style
from lemmse.figures.curves import fixed_text
from lemmse.figures.inputs import ARCH_ORDER, FigureInputs, fix, ordered
from lemmse.figures.select import MASS_STATISTICS, MEMO_ESTIMATORS, Selection


def _open(path: Path):
    from lemmse.store import open_dataset

    return open_dataset(path)


class _Stores:
    """Opened stores, each once per figure."""

    def __init__(self):
        self._open = {}

    def __call__(self, path: Path):
        if path not in self._open:
            self._open[path] = _open(path)
        return self._open[path]


def pick(ds, var: str, *, split: str, image: int, sigma: float) -> np.ndarray:
    """``ds[var]`` at one (split, image, σ) as a numpy array (σ matched to 1e-9 relative)."""
    if var not in ds.data_vars:
        raise LemmseInputError(f"{ds.encoding.get('source', 'the store')} has no variable {var!r}: it was written "
                               "by an older lemmse; delete it and rerun the job that writes it")
    sig = ds["sigma"].values
    idx = np.flatnonzero(np.isclose(sig, float(sigma), rtol=1e-9, atol=0.0))
    if len(idx) != 1:
        raise LemmseInputError(f"σ = {sigma:g} is not in the store (it has {', '.join(f'{s:g}' for s in sig)})")
    return np.asarray(ds[var].sel(split=split).isel(sigma=int(idx[0])).sel(image=image).values)


def _truth(inputs: FigureInputs, dataset: str, task: str, split: str, image: int) -> np.ndarray:
    from lemmse.data import load_clean

    return load_clean(inputs.stores.measurements(dataset, task), split)[image]


def _training_image(inputs: FigureInputs, dataset: str, index: int) -> np.ndarray:
    """Training image ``index`` of ``dataset`` (one image read from the data store)."""
    from lemmse.data import open_data

    return np.asarray(open_data(inputs.stores.data(dataset))["train"].isel(train_image=index).values)


# ---------------------------------------------------------------------------------------------- fig 2
def draw_fig2(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per data set × problem: y, MMSE, E-MMSE, LE-MMSE, the training image nearest to the MMSE output, the
    truth, and the distance of each estimator's output to the training set against σ."""
    panels = sel.extra["images"]
    rows = list(dict.fromkeys(panels[["dataset", "task", "preinverse"]].itertuples(index=False, name=None)))
    estimators = [e for e in MEMO_ESTIMATORS if e in set(panels["estimator"])]
    ncols = len(estimators) + 4
    fig, axes = style.new_figure(len(rows), ncols, panel=(1.55, 2.0),
                                 gridspec_kw={"width_ratios": [1.0] * (ncols - 1) + [2.2]})
    stores = _Stores()
    for r, (ds, task, pre) in enumerate(rows):
        cell = fix(panels, dataset=ds, task=task, preinverse=pre)
        first = cell.iloc[0]
        split, image, sigma, n = str(first["split"]), int(first["image"]), float(first["sigma"]), int(first["train_size"])
        meas = inputs.stores.measurements(ds, task)
        style.image_panel(axes[r, 0], pick(stores(meas), "y", split=split, image=image, sigma=sigma),
                          f"y ({ds}, {task})\nσ = {sigma:g}")
        nearest = None
        for c, est in enumerate(estimators, start=1):
            row = fix(cell, estimator=est).iloc[0]
            store = stores(inputs.stores.analytic(ds, task, pre, est, int(row["patch"]), n, ds))
            out = pick(store, "xhat", split=split, image=image, sigma=sigma)
            if est == "mmse":  # the MMSE shards wrote the index of its nearest training image
                nearest = int(pick(store, "nearest_train_index", split=split, image=image, sigma=sigma))
            d = row["nearest_train_distance"]
            style.image_panel(axes[r, c], out, style.estimator_label(est) + (f"\nd_train = {d:.3f}" if np.isfinite(d) else ""))
        if nearest is None:
            raise LemmseInputError(f"Fig. 2: no MMSE output for {ds}, {task}, {pre} (its nearest training image "
                                   "is the one shown)")
        style.image_panel(axes[r, len(estimators) + 1], _training_image(inputs, ds, nearest),
                          f"nearest training\nimage (#{nearest})")
        style.image_panel(axes[r, len(estimators) + 2], _truth(inputs, ds, task, split, image),
                          f"truth ({split} #{image})")
        ax = axes[r, -1]
        curves = fix(sel.frame, dataset=ds, task=task, preinverse=pre, split=split)
        for est in estimators:
            part = fix(curves, estimator=est, quantity="nearest_train_distance").sort_values("sigma")
            ax.plot(part["sigma"], part["mean"], marker="o", markersize=3, color=style.estimator_color(est),
                    label=style.estimator_label(est))
        ref_d = fix(curves, estimator=estimators[0], quantity="truth_nearest_train_distance").sort_values("sigma")
        ax.plot(ref_d["sigma"], ref_d["mean"], color="0.5", linestyle=":", label="truth")
        style.sigma_axis(ax, curves["sigma"])
        ax.set_xlabel("σ")
        ax.set_ylabel("RMS distance to the\nnearest training image")
        ax.set_title(f"distance to the training set ({split}, mean)", fontsize=8)
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 2 — memorisation (N = {panels['train_size'].iloc[0]}, LE-MMSE P = {sel.fixed['patch']})")


# ---------------------------------------------------------------------------------------------- fig 7
def draw_fig7(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per OOD block: one test image of the other data set at a few σ — y, network, LE-MMSE — and the truth."""
    blocks = sel.facet_values()
    sigmas = ordered(sel.frame["sigma"])
    fig, axes = style.new_figure(3 * len(blocks), len(sigmas) + 1, panel=(1.4, 1.45))
    stores = _Stores()
    for b, combo in enumerate(blocks):
        v = dict(zip(sel.facets, combo))
        cell = fix(sel.frame, **v)
        first = cell.iloc[0]
        split, image = str(first["split"]), int(first["image"])
        net = inputs.stores.network(v["dataset"], v["task"], v["preinverse"], v["arch"], v["patch"], v["train_size"],
                                    v["eval_dataset"])
        est = inputs.stores.analytic(v["dataset"], v["task"], v["preinverse"], "lemmse", v["patch"], v["train_size"],
                                     v["eval_dataset"])
        meas = inputs.stores.measurements(v["eval_dataset"], v["task"])
        label = (f"trained on {v['dataset']}\nevaluated on {v['eval_dataset']}\n{style.arch_label(v['arch'])}, "
                 f"P = {v['patch']}, N = {v['train_size']}\n{inputs.problem_label(v['task'], v['preinverse'])}")
        style.image_panel(axes[3 * b, 0], _truth(inputs, v["eval_dataset"], v["task"], split, image),
                          f"truth ({split} #{image})")
        axes[3 * b, 0].set_ylabel(label.replace(", ", "\n", 1), fontsize=6.5)
        axes[3 * b + 1, 0].axis("off")
        axes[3 * b + 2, 0].axis("off")
        axes[3 * b + 1, 0].text(0.5, 0.5, f"rows: y,\n{style.arch_label(v['arch'])},\nLE-MMSE", ha="center",
                                va="center", fontsize=7.5, transform=axes[3 * b + 1, 0].transAxes)
        for c, s in enumerate(sigmas, start=1):
            row = cell[np.isclose(cell["sigma"], s)]
            if row.empty:
                for k in range(3):
                    axes[3 * b + k, c].axis("off")
                continue
            psnr = float(row["psnr_net_est"].iloc[0])
            style.image_panel(axes[3 * b, c], pick(stores(meas), "y", split=split, image=image, sigma=s), f"y, σ = {s:g}")
            style.image_panel(axes[3 * b + 1, c], pick(stores(net), "xhat", split=split, image=image, sigma=s),
                              f"{style.arch_label(v['arch'])}" + (f"\n{psnr:.1f} dB to LE-MMSE" if np.isfinite(psnr) else ""))
            style.image_panel(axes[3 * b + 2, c], pick(stores(est), "xhat", split=split, image=image, sigma=s), "LE-MMSE")
    style.save(fig, out_png, config_label=config_label,
               title="Fig. 7 — out of distribution: network and LE-MMSE of one training set on another data set")


# ------------------------------------------------------------------------------------ fig 1 and 13
def _gallery_row(inputs: FigureInputs, stores: _Stores, part, archs: list[str], *, sigma: float,
                 with_by: bool) -> tuple[list[tuple], int]:
    """The panels ``(image or None, title)`` of one gallery row (Fig. 1 and 13–16): y, (B y), every
    architecture's output (title: its PSNR to the LE-MMSE), the LE-MMSE and the truth; and the image."""
    first = part.iloc[0]
    ds, p, n, task, pre, split = (str(first["dataset"]), int(first["patch"]), int(first["train_size"]),
                                  str(first["task"]), str(first["preinverse"]), str(first["split"]))
    image = int(first["image"])
    y = pick(stores(inputs.stores.measurements(ds, task)), "y", split=split, image=image, sigma=sigma)
    est_store = stores(inputs.stores.analytic(ds, task, pre, "lemmse", p, n, ds))
    est = pick(est_store, "xhat", split=split, image=image, sigma=sigma)
    panels = [(y, "y")] + ([(pick(est_store, "by", split=split, image=image, sigma=sigma), "B y")] if with_by else [])
    for arch in archs:
        cell = fix(part, arch=arch)
        if cell.empty:
            panels.append((None, f"{style.arch_label(arch)}\n(not trained here)"))
            continue
        out = pick(stores(inputs.stores.network(ds, task, pre, arch, p, n, ds)), "xhat", split=split, image=image,
                   sigma=sigma)
        v = float(cell["psnr_net_est"].iloc[0])
        panels.append((out, style.arch_label(arch) + (f"\n{v:.1f} dB to LE-MMSE" if np.isfinite(v) else "")))
    panels += [(est, "LE-MMSE"), (_truth(inputs, ds, task, split, image), "truth")]
    return panels, image


def _show_row(axes_row, panels: list[tuple]) -> None:
    for ax, (img, title) in zip(axes_row, panels):
        if img is None:
            ax.axis("off")
            ax.set_title(title, fontsize=7, color="0.4")
            continue
        style.image_panel(ax, img, title)


def draw_fig1(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """The overview: one row per problem of the reference slice: y, each architecture's output, LE-MMSE, truth."""
    f = sel.frame
    archs = ordered(f["arch"], ARCH_ORDER)
    rows = sel.facet_values()
    fig, axes = style.new_figure(len(rows), 3 + len(archs), panel=(1.35, 1.5))
    stores = _Stores()
    for r, (task, pre) in enumerate(rows):
        panels, image = _gallery_row(inputs, stores, fix(f, task=task, preinverse=pre), archs,
                                     sigma=sel.fixed["sigma"], with_by=False)
        _show_row(axes[r], panels)
        axes[r, 0].set_ylabel(inputs.problem_label(task, pre).replace(", ", "\n") + f"\n{sel.fixed['split']} #{image}",
                              fontsize=7)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 1 — trained networks output the LE-MMSE ({sel.fixed['dataset']}, {fixed_text(sel.fixed)})")


def draw_fig13(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per data set × P block, per problem and split: y, B y, each architecture's output, LE-MMSE, truth."""
    f = sel.frame
    archs = ordered(f["arch"], ARCH_ORDER)
    rows = list(dict.fromkeys(f[["dataset", "patch", "task", "preinverse", "split"]].itertuples(index=False, name=None)))
    fig, axes = style.new_figure(len(rows), 4 + len(archs), panel=(1.25, 1.4))
    stores = _Stores()
    for r, (ds, p, task, pre, split) in enumerate(rows):
        panels, image = _gallery_row(inputs, stores, fix(f, dataset=ds, patch=p, task=task, preinverse=pre, split=split),
                                     archs, sigma=sel.fixed["sigma"], with_by=True)
        _show_row(axes[r], panels)
        label = inputs.problem_label(task, pre).replace(", ", "\n")
        axes[r, 0].set_ylabel(f"{ds}, P = {p}\n{label}\n{split} #{image}", fontsize=7)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 13–16 — outputs ({fixed_text(sel.fixed)})")


# ---------------------------------------------------------------------------------------------- fig 3
def draw_fig3(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per data set × task × σ: y, the E-MMSE with B = I and with B = A⁺ (titles: shift-aware distance to
    the training set), |difference| (title: PSNR between them), the shifted training image nearest to the
    B = I output, and the truth."""
    from lemmse.data import load_split
    from lemmse.metrics import psnr

    if sel.frame["nearest_index"].isna().any():
        raise LemmseInputError("fig3_emmse: no memorisation table beside the tables (memorisation.parquet): it holds "
                               "each E-MMSE output's nearest shifted training image")
    rows = sel.facet_values()
    fig, axes = style.new_figure(len(rows), 6, panel=(1.45, 1.6))
    stores = _Stores()
    diffs = []
    for r, (ds, task, sigma) in enumerate(rows):
        cell = fix(sel.frame, dataset=ds, task=task)
        cell = cell[np.isclose(cell["sigma"], sigma)]
        first = cell.iloc[0]
        split, image, n = str(first["split"]), int(first["image"]), int(first["train_size"])
        y = pick(stores(inputs.stores.measurements(ds, task)), "y", split=split, image=image, sigma=sigma)
        style.image_panel(axes[r, 0], y, f"y, σ = {sigma:g}")
        axes[r, 0].set_ylabel(f"{ds}, {task}\n{split} #{image}, N = {n}", fontsize=7)
        outs = {}
        for c, kind in enumerate(("identity", "pinv"), start=1):
            row = fix(cell, kind=kind).iloc[0]
            out = pick(stores(inputs.stores.analytic(ds, task, str(row["preinverse"]), "emmse", 0, n, ds)), "xhat",
                       split=split, image=image, sigma=sigma)
            dist, index = float(row["distance"]), int(row["nearest_index"])
            shift = (int(row["nearest_shift_h"]), int(row["nearest_shift_w"]))
            training = load_split(inputs.stores.data(ds), "train", index + 1)[index]
            outs[kind] = (out, index, shift, np.roll(training, shift=shift, axis=(-2, -1)))
            name = "B = I" if kind == "identity" else "B = A⁺"
            style.image_panel(axes[r, c], out, f"E-MMSE, {name}\nd_aug = {dist:.3f}")
        a, b = outs["identity"][0], outs["pinv"][0]
        value = float(psnr(a[None], b[None])[0])
        diffs.append((axes[r, 3], np.abs(a.astype(np.float64) - b).max(axis=0),
                      "|B = I − B = A⁺|\n" + ("identical" if not np.isfinite(value) else f"PSNR {value:.1f} dB")))
        _, index, shift, nearest = outs["identity"]
        h, w = nearest.shape[-2:]
        signed = ((shift[0] + h // 2) % h - h // 2, (shift[1] + w // 2) % w - w // 2)  # circular: -4, not 12 of 16
        style.image_panel(axes[r, 4], nearest, f"training #{index}\nshifted by {signed}")
        style.image_panel(axes[r, 5], _truth(inputs, ds, task, split, image), "truth")
    top = max([float(d.max()) for _, d, _ in diffs] + [1e-3])
    handle = None
    for ax, d, title in diffs:
        handle = style.image_panel(ax, d, title, cmap="magma", vmin=0.0, vmax=top)
    if handle is not None:
        fig.colorbar(handle, ax=list(axes.ravel()), label="|B = I − B = A⁺| (max over channels)", shrink=0.5)
    style.save(fig, out_png, config_label=config_label,
               title="Fig. 3 — E-MMSE (Cor. 3.7): B = I and B = A⁺ coincide for deconvolution, not for inpainting;\n"
                     "the output is a shifted training image (d_aug: RMS distance to the shifted training set)")


# ------------------------------------------------------------------------------------------ fig 20-22
def draw_fig20_22(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Per data set: the mass summaries against σ (mean and median over observed pixels, B = I solid,
    physics-aware dash-dot) and the per-pixel count maps of one test image at a few σ."""
    maps = sel.extra["maps"]
    datasets = ordered(sel.frame["dataset"])
    probs = {ds: list(dict.fromkeys(fix(maps, dataset=ds)[["task", "preinverse"]].itertuples(index=False, name=None)))
             for ds in datasets}
    sigmas = ordered(maps["sigma"])
    nrows = sum(max(len(p), 2) for p in probs.values())
    fig = style.plt.figure(figsize=(4.4 + 1.4 * len(sigmas), 1.5 * nrows + 0.6), layout="constrained")
    grid = fig.add_gridspec(nrows, 1 + len(sigmas), width_ratios=[2.6] + [1] * len(sigmas))
    stores = _Stores()
    loaded, positions = {}, []
    top = 0
    for ds in datasets:
        k = max(len(probs[ds]), 2)
        half = k // 2
        curves = fix(sel.frame, dataset=ds)
        for row, (statistic, rows) in enumerate(zip(MASS_STATISTICS, (slice(top, top + half), slice(top + half, top + k)))):
            ax = fig.add_subplot(grid[rows, 0])
            for task, pre in probs[ds]:
                part = fix(curves, statistic=statistic, task=task, preinverse=pre).sort_values("sigma")
                ax.plot(part["sigma"], part["mean"], marker="o", markersize=3.5, color=style.TASK_COLORS.get(task, "0.4"),
                        linestyle=style.AGNOSTIC_STYLE if inputs.is_agnostic(pre) else style.AWARE_STYLE,
                        label=inputs.problem_label(task, pre))
            style.sigma_axis(ax, curves["sigma"])
            ax.set_yscale("log")
            ax.set_ylabel(style.MASS_OBSERVED_LABEL.format(statistic=statistic.rsplit("_", 1)[1]), fontsize=7)
            if row == 0:
                ax.set_title(f"Fig. 20 — {ds} ({sel.frame['split'].iloc[0]} images)", fontsize=8.5)
                ax.legend(fontsize=6.5)
        for r, (task, pre) in enumerate(probs[ds]):
            cell = fix(maps, dataset=ds, task=task, preinverse=pre)
            store = stores(inputs.stores.analytic(ds, task, pre, "lemmse", int(cell["patch"].iloc[0]),
                                                  int(cell["train_size"].iloc[0]), ds))
            for m in cell.itertuples(index=False):
                c = sigmas.index(m.sigma)
                loaded[top + r, c] = pick(store, "mass99", split=m.split, image=int(m.image), sigma=m.sigma).astype(float)
                positions.append((top + r, c, ds, task, pre))
        top += k
    hi = max((float(np.nanmax(v)) for v in loaded.values()), default=1.0)
    norm = style.log_norm(1.0, max(hi, 10.0))
    handle = None
    map_axes = []
    for (r, c, ds, task, pre) in positions:
        axm = fig.add_subplot(grid[r, 1 + c])
        map_axes.append(axm)
        handle = axm.imshow(np.maximum(loaded[r, c], 1.0), cmap="magma", norm=norm, interpolation="nearest")
        axm.set_xticks([])
        axm.set_yticks([])
        axm.grid(False)
        axm.set_title(f"σ = {sigmas[c]:g}", fontsize=7)
        if c == 0:
            axm.set_ylabel(f"{ds}\n" + inputs.problem_label(task, pre).replace(", ", "\n"), fontsize=7)
    if handle is not None:
        fig.colorbar(handle, ax=map_axes, label="patches holding 99 % (per pixel, every pixel)", shrink=0.6)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 20–22 — mass ({fixed_text(sel.fixed)})")


# --------------------------------------------------------------------------------------------- fig 23
def draw_fig24(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Fig. 24: the patchwork of :func:`draw_fig23` on the training data sets other than the reference."""
    draw_fig23(sel, inputs, out_png, config_label=config_label, figure="Fig. 24")


def draw_fig23(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "",
               figure: str = "Fig. 23") -> None:
    """Per data set × problem, at its largest P: the LE-MMSE estimate and its single-patch source map at a
    few σ, for one test image."""
    from matplotlib.colors import ListedColormap

    blocks = sel.facet_values()
    sigmas = ordered(sel.frame["sigma"])
    fig, axes = style.new_figure(2 * len(blocks), len(sigmas) + 1, panel=(1.4, 1.45))
    base = style.plt.get_cmap("tab20")
    stores = _Stores()
    for k, (ds, task, pre) in enumerate(blocks):
        cell = fix(sel.frame, dataset=ds, task=task, preinverse=pre)
        first = cell.iloc[0]
        p, n, split, image = int(first["patch"]), int(first["train_size"]), str(first["split"]), int(first["image"])
        colours = ListedColormap([base(i % 20) for i in range(max(n, 1))]).with_extremes(under="white")
        store = stores(inputs.stores.analytic(ds, task, pre, "lemmse", p, n, ds))
        style.image_panel(axes[2 * k, 0], _truth(inputs, ds, task, split, image), f"truth ({split} #{image})")
        axes[2 * k, 0].set_ylabel(f"{ds}\n" + inputs.problem_label(task, pre).replace(", ", "\n") + f"\nP = {p}",
                                  fontsize=7)
        axes[2 * k + 1, 0].axis("off")
        axes[2 * k + 1, 0].text(0.5, 0.5, "source image\nper pixel: one\ntraining patch\nholds ≥ 50 %\n(white: none)",
                                ha="center", va="center", fontsize=7, transform=axes[2 * k + 1, 0].transAxes)
        for c, s in enumerate(sigmas, start=1):
            if not np.isclose(cell["sigma"], s).any():
                axes[2 * k, c].axis("off")
                axes[2 * k + 1, c].axis("off")
                continue
            style.image_panel(axes[2 * k, c], pick(store, "xhat", split=split, image=image, sigma=s), f"LE-MMSE, σ = {s:g}")
            src = pick(store, "source", split=split, image=image, sigma=s)
            owned = float(np.mean(src >= 0)) * 100
            distinct = int(pick(store, "distinct_sources", split=split, image=image, sigma=s))  # the shard's count
            axes[2 * k + 1, c].imshow(np.where(src >= 0, src, -1), cmap=colours, vmin=0, vmax=max(n - 1, 1),
                                      interpolation="nearest")
            axes[2 * k + 1, c].set_xticks([])
            axes[2 * k + 1, c].set_yticks([])
            axes[2 * k + 1, c].grid(False)
            axes[2 * k + 1, c].set_title(f"{owned:.0f} % owned, {distinct} images", fontsize=7)
    style.save(fig, out_png, config_label=config_label,
               title=f"{figure} — the LE-MMSE patchwork on {', '.join(ordered(sel.frame['dataset']))}, single-patch "
                     f"source map (largest P per problem, {fixed_text(sel.fixed)})")
