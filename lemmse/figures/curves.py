"""The drawing layer for the figures drawn from the tables alone: Fig. 5, Table 2, Fig. 6, 8, 17,
18–19, 25 and 26.

Each ``draw_*`` takes the :class:`~lemmse.figures.select.Selection` of its figure (the tidy frame of
means, standard deviations and counts over images, already computed) and draws one panel per facet
combination the frame holds; it computes nothing but positions and colours. Bands are ± one standard
deviation over images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lemmse.figures import style
from lemmse.figures.inputs import ARCH_ORDER, FigureInputs, fix, ordered
from lemmse.figures.select import DENSITY_IMAGE, Selection


def _band(ax, stats: pd.DataFrame, x: str, color, linestyle, label, marker="o") -> None:
    stats = stats.sort_values(x)
    ax.plot(stats[x], stats["mean"], color=color, linestyle=linestyle, marker=marker, markersize=3.5, label=label)
    std = stats["std"].fillna(0.0)
    ax.fill_between(stats[x], stats["mean"] - std, stats["mean"] + std, color=color, alpha=0.12, linewidth=0)


def legend_below(fig, axes) -> None:
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if handles:
        fig.legend([handles[k] for k in labels], labels, loc="outside lower center", ncol=min(len(labels), 4),
                   frameon=False)


def fixed_text(fixed: dict) -> str:
    parts = []
    for key, fmt in (("patch", "P = {}"), ("train_size", "N = {}"), ("sigma", "σ = {:g}")):
        if key in fixed:
            parts.append(fmt.format(fixed[key]))
    return ", ".join(parts)


def _grid(sel: Selection, row_keys: tuple[str, ...], col_keys: tuple[str, ...]):
    """Row and column facet values of ``sel.frame`` in frame order."""
    rows = list(dict.fromkeys(sel.frame[list(row_keys)].itertuples(index=False, name=None))) if row_keys else [()]
    cols = list(dict.fromkeys(sel.frame[list(col_keys)].itertuples(index=False, name=None)))
    return rows, cols


def _cell(frame: pd.DataFrame, keys: tuple[str, ...], values: tuple) -> pd.DataFrame:
    return fix(frame, **dict(zip(keys, values)))


def _empty(ax, text: str = "not in the sweep") -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="0.5", transform=ax.transAxes)


# ---------------------------------------------------------------------------------------------- fig 5
def draw_fig5(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """The three PSNRs against σ: rows data set × architecture (× P × N for Fig. 9), columns problems."""
    row_keys = tuple(k for k in sel.facets if k not in ("task", "preinverse"))
    rows, cols = _grid(sel, row_keys, ("task", "preinverse"))
    fig, axes = style.new_figure(len(rows), len(cols), panel=(3.2, 2.5))
    for r, row in enumerate(rows):
        v = dict(zip(row_keys, row))
        ds, arch = v["dataset"], v["arch"]
        where = f", P = {v['patch']}, N = {v['train_size']}" if "patch" in v else ""
        for c, (task, pre) in enumerate(cols):
            ax = axes[r, c]
            sub = fix(sel.frame, **v, task=task, preinverse=pre)
            if sub.empty:
                _empty(ax)
                continue
            for quantity in ("psnr_net_est", "psnr_net_truth", "psnr_est_truth"):
                for split in ordered(sub["split"], ("train", "test")):
                    _band(ax, fix(sub, quantity=quantity, split=split), "sigma", style.QUANTITY_COLORS[quantity],
                          style.SPLIT_STYLES.get(split, ":"), f"{style.QUANTITY_LABELS[quantity]} ({split})",
                          style.SPLIT_MARKERS.get(split, "o"))
            if "fixed_sigma" in sel.extra:
                _fixed_sigma_points(ax, fix(sel.extra["fixed_sigma"], **v, task=task, preinverse=pre))
            style.sigma_axis(ax, sub["sigma"])
            ax.set_ylabel(style.PSNR_LABEL)
            ax.set_title(f"{ds}, {style.arch_label(arch)}{where} — {inputs.problem_label(task, pre)}", fontsize=7.5)
    legend_below(fig, axes)
    title = (f"Fig. 5 — PSNR against σ ({fixed_text(sel.fixed)}; net = the row's architecture)" if sel.fixed else
             "Fig. 9 — PSNR against σ on the data sets outside the reference slice (net = the row's architecture)")
    style.save(fig, out_png, config_label=config_label, title=title)


def _fixed_sigma_points(ax, points: pd.DataFrame) -> None:
    """Networks trained at one fixed σ, each a point at its σ (stars: test, diamonds: train), in the
    colour of its quantity: beside the σ-conditioned network's curves of the same panel."""
    for quantity in ("psnr_net_est", "psnr_net_truth"):
        for split, marker in (("train", "D"), ("test", "*")):
            pts = fix(points, quantity=quantity, split=split)
            if len(pts):
                ax.errorbar(pts["sigma"], pts["mean"], yerr=pts["std"].fillna(0.0), fmt=marker, markersize=7,
                            color=style.QUANTITY_COLORS[quantity], markeredgecolor="black", markeredgewidth=0.6,
                            label=f"{style.QUANTITY_LABELS[quantity]}, net trained at that σ only ({split})")


# ------------------------------------------------------------------------------------------- table 2
def table2_markdown(sel: Selection, config_label: str = "") -> str:
    md = sel.frame.assign(column=lambda t: t["dataset"] + " / " + t["task"] + " / " + t["preinverse"])
    lines = [f"PSNR(net, LE-MMSE) in dB, mean over σ and images ({fixed_text(sel.fixed)})"
             + (f"; {config_label}" if config_label else ""), ""]
    for split in ordered(md["split"], ("train", "test")):
        piv = md[md["split"] == split].pivot_table(index="arch", columns="column", values="psnr_net_est_mean",
                                                   dropna=False, sort=False)
        piv = piv.reindex(ordered(piv.index, ARCH_ORDER))
        lines += [f"**{split}**", "", "| arch | " + " | ".join(piv.columns) + " |", "|---|" + "---|" * len(piv.columns)]
        lines += ["| " + style.arch_label(a) + " | " + " | ".join(f"{v:.2f}" for v in piv.loc[a]) + " |" for a in piv.index]
        lines.append("")
    return "\n".join(lines)


def draw_table2(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Heat-map of PSNR(net, LE-MMSE) per architecture × (data set, problem); ``.csv`` and ``.md`` beside."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sel.frame.to_csv(out_png.with_suffix(".csv"), index=False, float_format="%.2f")
    out_png.with_suffix(".md").write_text(table2_markdown(sel, config_label))
    md = sel.frame.assign(column=lambda t: t["dataset"] + " / " + t["task"] + " / " + t["preinverse"])
    splits = ordered(md["split"], ("train", "test"))
    fig, axes = style.new_figure(len(splits), 1, panel=(1.3 + 0.9 * md["column"].nunique(), 1.0 + 0.5 * md["arch"].nunique()))
    lo, hi = np.nanmin(md["psnr_net_est_mean"]), np.nanmax(md["psnr_net_est_mean"])
    image = None
    for ax, split in zip(axes[:, 0], splits):
        piv = md[md["split"] == split].pivot_table(index="arch", columns="column", values="psnr_net_est_mean",
                                                   dropna=False, sort=False)
        piv = piv.reindex(ordered(piv.index, ARCH_ORDER))
        image = ax.imshow(piv.to_numpy(), cmap="viridis", vmin=lo, vmax=max(hi, lo + 1), aspect="auto")
        ax.set_xticks(range(piv.shape[1]), [c.replace(" / ", "\n") for c in piv.columns], fontsize=6.5)
        ax.set_yticks(range(piv.shape[0]), [style.arch_label(a) for a in piv.index])
        ax.grid(False)
        for (i, j), v in np.ndenumerate(piv.to_numpy()):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if v < (lo + hi) / 2 else "black")
        ax.set_title(f"{split} images")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="PSNR(net, LE-MMSE) (dB)", shrink=0.9)
    style.save(fig, out_png, config_label=config_label,
               title=f"Table 2 — agreement per architecture ({fixed_text(sel.fixed)})")


# ---------------------------------------------------------------------------------------------- fig 6
def draw_fig6(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """PSNR(net, LE-MMSE) per image against −log p(y) (paper convention), coloured by σ."""
    rows, cols = _grid(sel, ("dataset", "arch"), ("task", "preinverse"))
    fig, axes = style.new_figure(len(rows), len(cols), panel=(3.2, 2.6))
    sigmas = sorted(sel.frame["sigma"].unique())
    norm = style.log_norm(min(sigmas), max(sigmas)) if len(sigmas) > 1 else None
    scatter = None
    for r, (ds, arch) in enumerate(rows):
        for c, (task, pre) in enumerate(cols):
            ax = axes[r, c]
            sub = fix(sel.frame, dataset=ds, arch=arch, task=task, preinverse=pre)
            if sub.empty:
                _empty(ax)
                continue
            for split in ordered(sub["split"], ("train", "test")):
                part = fix(sub, split=split)
                scatter = ax.scatter(part[DENSITY_IMAGE], part["psnr_net_est"], c=part["sigma"], cmap="viridis",
                                     norm=norm, marker=style.SPLIT_MARKERS.get(split, "o"), s=14, alpha=0.8,
                                     edgecolors="none", label=f"{split} images")
            ax.set_xscale("symlog", linthresh=100.0)  # densities span orders of magnitude across σ and splits
            ax.set_xlabel(style.DENSITY_IMAGE_LABEL.replace(", paper", ",\npaper").replace(", no", ",\nno")
                          + " (nats, symlog)", fontsize=6.5)
            ax.set_ylabel("PSNR(net, LE-MMSE) (dB)")
            ax.set_title(f"{ds}, {style.arch_label(arch)} — {inputs.problem_label(task, pre)}", fontsize=8)
    legend_below(fig, axes)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes.ravel().tolist(), label="σ", shrink=0.6)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 6 — agreement against the measurement density ({fixed_text(sel.fixed)})")


# --------------------------------------------------------------------------------------------- fig 25
def draw_fig25(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Agreement (top) and reconstruction (bottom) PSNRs against σ, in-distribution solid, OOD dashed."""
    keys = sel.facets
    cols = sel.facet_values()
    fig, axes = style.new_figure(2, len(cols), panel=(3.4, 2.7))
    for c, combo in enumerate(cols):
        sub = _cell(sel.frame, keys, combo)
        v = dict(zip(keys, combo))
        for row, quantities in enumerate((("psnr_net_est",), ("psnr_net_truth", "psnr_est_truth"))):
            ax = axes[row, c]
            for q in quantities:
                for ind, linestyle, marker in ((True, "-", "o"), (False, "--", "s")):
                    part = fix(sub, quantity=q, in_distribution=ind)
                    if part.empty:
                        continue
                    _band(ax, part, "sigma", style.QUANTITY_COLORS[q], linestyle,
                          f"{style.QUANTITY_LABELS[q]}, {'in-distribution' if ind else 'OOD'} test images", marker)
            style.sigma_axis(ax, sub["sigma"])
            ax.set_ylabel(style.PSNR_LABEL)
            title = (f"trained on {v['dataset']}, evaluated on {v['ood_dataset']}\n{style.arch_label(v['arch'])}, "
                     f"P = {v['patch']}, N = {v['train_size']}, {inputs.problem_label(v['task'], v['preinverse'])}")
            ax.set_title(title + (" — agreement" if row == 0 else " — reconstruction"), fontsize=7.5)
    legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title="Fig. 25 — out of distribution: PSNR against σ")


# ---------------------------------------------------------------------------------------------- fig 8
def draw_fig8(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Smoothed LE-MMSE vs LE-MMSE: agreement (top) and PSNR to the truth (bottom) against σ."""
    keys = sel.facets
    cols = sel.facet_values()
    fig, axes = style.new_figure(2, len(cols), panel=(3.4, 2.7))
    variants = list(sel.frame[["estimator", "smoothing"]].drop_duplicates().sort_values(["estimator", "smoothing"])
                    .itertuples(index=False))
    smooth_colors = style.sequential_colors(max(1, sum(v.estimator == "smoothed" for v in variants)), "winter")
    for c, combo in enumerate(cols):
        sub = _cell(sel.frame, keys, combo)
        v = dict(zip(keys, combo))
        for row, q in enumerate(("psnr_net_est", "psnr_est_truth")):
            ax = axes[row, c]
            k = 0
            for var in variants:
                color = style.estimator_color("lemmse") if var.estimator == "lemmse" else smooth_colors[k]
                k += var.estimator == "smoothed"
                for split in ordered(sub["split"], ("train", "test")):
                    part = fix(sub, quantity=q, estimator=var.estimator, smoothing=var.smoothing, split=split)
                    if not part.empty:
                        _band(ax, part, "sigma", color, style.SPLIT_STYLES.get(split, ":"),
                              f"{style.estimator_label(var.estimator, var.smoothing)} ({split})",
                              style.SPLIT_MARKERS.get(split, "o"))
            style.sigma_axis(ax, sub["sigma"])
            ax.set_ylabel("PSNR(net, estimator) (dB)" if row == 0 else "PSNR(estimator, truth) (dB)")
            ax.set_title(f"{v['dataset']}, {style.arch_label(v['arch'])}, P = {v['patch']}, N = {v['train_size']}\n"
                         f"{inputs.problem_label(v['task'], v['preinverse'])}", fontsize=7.5)
    legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title="Fig. 8 — smoothed LE-MMSE")


# ------------------------------------------------------------------------------------- fig 17, 18, 19
def _per_sigma(ax, df: pd.DataFrame, x: str) -> None:
    sigmas = sorted(df["sigma"].unique())
    for color, s in zip(style.sequential_colors(len(sigmas)), sigmas):
        for split in ordered(df["split"], ("train", "test")):
            part = fix(df, sigma=s, split=split)
            if not part.empty:
                _band(ax, part, x, color, style.SPLIT_STYLES.get(split, ":"), f"σ = {s:g} ({split})",
                      style.SPLIT_MARKERS.get(split, "o"))


def _patch_axis(ax, df: pd.DataFrame) -> None:
    ax.set_xticks(sorted(df["patch"].unique()))
    ax.set_xlabel("patch size P (pixels)")


def draw_fig17(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Patch −log density (paper convention) against P, one curve per σ and split, a panel per facet."""
    cols = sel.facet_values()
    fig, axes = style.new_figure(1, len(cols), panel=(4.4, 3.6))
    for ax, (ds, task, pre) in zip(axes[0], cols):
        sub = fix(sel.frame, dataset=ds, task=task, preinverse=pre)
        _per_sigma(ax, sub, "patch")
        _patch_axis(ax, sub)
        ax.set_ylabel(style.DENSITY_PATCH_LABEL, fontsize=7)
        ax.set_title(f"{ds} — {inputs.problem_label(task, pre)}", fontsize=8)
    legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 17 — patch density against P ({fixed_text(sel.fixed)})")


def draw_fig18_19(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Rows: Fig. 18 per architecture (PSNR(net, LE-MMSE) against P), Fig. 19 on test and on train images
    (PSNR(LE-MMSE, truth) against P); one column per data set × problem; one curve per σ."""
    cols = sel.facet_values()
    f18 = fix(sel.frame, panel="fig18")
    archs = ordered(f18["arch"], ARCH_ORDER)
    rows = [("fig18", a, None) for a in archs] + [("fig19", "", "test"), ("fig19", "", "train")]
    fig, axes = style.new_figure(len(rows), len(cols), panel=(3.2, 2.5))
    for c, (ds, task, pre) in enumerate(cols):
        for r, (panel, arch, split) in enumerate(rows):
            ax = axes[r, c]
            sub = fix(sel.frame, dataset=ds, task=task, preinverse=pre, panel=panel, arch=arch)
            if split is not None:
                sub = fix(sub, split=split)
            if sub.empty:
                _empty(ax)
                continue
            _per_sigma(ax, sub, "patch")
            _patch_axis(ax, sub)
            problem = f"{ds} — {inputs.problem_label(task, pre)}"
            if panel == "fig18":
                ax.set_ylabel(f"PSNR({style.arch_label(arch)}, LE-MMSE) (dB)")
                ax.set_title(f"Fig. 18 — {problem}", fontsize=8)
            else:
                ax.set_ylabel(f"PSNR(LE-MMSE, truth), {split} (dB)")
                ax.set_title(f"Fig. 19 ({split}) — {problem}", fontsize=7.5)
    legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 18–19 — patch size ({fixed_text(sel.fixed)})")


# --------------------------------------------------------------------------------------------- fig 26
def draw_fig26(sel: Selection, inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """PSNR(net, LE-MMSE) against N, one curve per σ and split, a panel per facet."""
    cols = sel.facet_values()
    fig, axes = style.new_figure(1, len(cols), panel=(3.4, 2.8))
    for ax, (ds, arch, task, pre) in zip(axes[0], cols):
        sub = fix(sel.frame, dataset=ds, arch=arch, task=task, preinverse=pre)
        _per_sigma(ax, sub, "train_size")
        sizes = sorted(sub["train_size"].unique())
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training images N")
        ax.set_ylabel(f"PSNR({style.arch_label(arch)}, LE-MMSE) (dB)")
        ax.set_title(f"{ds} — {inputs.problem_label(task, pre)}", fontsize=8)
    legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 26 — dataset size ({fixed_text(sel.fixed)})")
