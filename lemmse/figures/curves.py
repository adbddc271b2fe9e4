"""Line and scatter figures from the tables alone: Fig. 5, 6, 7, 8, 17, 18–19, 20 (curves), 26, Table 2.

Each figure fixes one reference slice of the sweep (dataset, architecture, patch, train size:
:func:`reference_slice`) unless the figure is about that axis, and says which in its panel titles.
Curves are means over images; bands are ± one standard deviation over images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lemmse.errors import LemmseInputError
from lemmse.figures import style
from lemmse.figures.inputs import (ARCH_ORDER, FigureInputs, fix, in_distribution, mean_by, ordered, problems,
                                   reference_value, require)


def lemmse_metrics(inputs: FigureInputs, figure: str) -> pd.DataFrame:
    """In-distribution metrics rows against the plain LE-MMSE."""
    return require(in_distribution(fix(inputs.metrics, estimator="lemmse")),
                   "metrics rows of a network against the LE-MMSE on its own data set", figure)


def reference_slice(df: pd.DataFrame, figure: str, *, free: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict]:
    """Fix dataset, arch, patch and train_size (except the ``free`` ones) to their reference values."""
    chosen = {}
    for column, prefer in (("dataset", ()), ("arch", ARCH_ORDER[:1]), ("train_size", ()), ("patch", ())):
        if column in free or column not in df.columns:
            continue
        chosen[column] = reference_value(df, column, prefer)
        df = df[df[column] == chosen[column]]
    return require(df, f"rows for {chosen}", figure), chosen


def describe(chosen: dict) -> str:
    parts = []
    for key, fmt in (("dataset", "{}"), ("arch", "{}"), ("patch", "P = {}"), ("train_size", "N = {}")):
        if key in chosen:
            value = style.arch_label(chosen[key]) if key == "arch" else chosen[key]
            parts.append(fmt.format(value))
    return ", ".join(parts)


def _band(ax, stats: pd.DataFrame, x: str, color, linestyle, label, marker="o") -> None:
    ax.plot(stats[x], stats["mean"], color=color, linestyle=linestyle, marker=marker, markersize=3.5, label=label)
    std = stats["std"].fillna(0.0)
    ax.fill_between(stats[x], stats["mean"] - std, stats["mean"] + std, color=color, alpha=0.12, linewidth=0)


def _legend_below(fig, axes) -> None:
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if handles:
        fig.legend([handles[k] for k in labels], labels, loc="outside lower center", ncol=min(len(labels), 4),
                   frameon=False)


# ---------------------------------------------------------------------------------------------- fig 5
def select_fig5(inputs: FigureInputs):
    return reference_slice(lemmse_metrics(inputs, "fig5_psnr_vs_sigma"), "fig5_psnr_vs_sigma")


def make_fig5_psnr_vs_sigma(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """PSNR(net, LE-MMSE), PSNR(net, truth), PSNR(LE-MMSE, truth) against σ, one panel per problem."""
    df, chosen = select_fig5(inputs)
    probs = problems(df)
    fig, axes = style.new_figure(1, len(probs))
    for ax, (task, pre) in zip(axes[0], probs):
        sub = fix(df, task=task, preinverse=pre)
        for quantity in ("psnr_net_est", "psnr_net_truth", "psnr_est_truth"):
            for split in ordered(sub["split"], ("train", "test")):
                stats = mean_by(fix(sub, split=split), ["sigma"], quantity)
                _band(ax, stats, "sigma", style.QUANTITY_COLORS[quantity], style.SPLIT_STYLES.get(split, ":"),
                      f"{style.QUANTITY_LABELS[quantity].replace('net', style.arch_label(chosen['arch']))} ({split})",
                      style.SPLIT_MARKERS.get(split, "o"))
        style.sigma_axis(ax, sub["sigma"])
        ax.set_ylabel(style.PSNR_LABEL)
        ax.set_title(inputs.problem_label(task, pre))
    _legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 5 — PSNR against σ ({describe(chosen)})")


# ------------------------------------------------------------------------------------------- table 2
def select_table2(inputs: FigureInputs):
    df = lemmse_metrics(inputs, "table2_architectures")
    df, chosen = reference_slice(df, "table2_architectures", free=("dataset", "arch", "patch"))
    # one patch per (dataset, task): the reference patch of the whole table, else the smallest there
    patch = reference_value(df, "patch")
    df = df[df["patch"] == patch] if (df["patch"] == patch).any() else df
    chosen["patch"] = patch
    return df, chosen


def table2_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR(net, LE-MMSE) over σ and images per arch × dataset × task × pre-inverse × split."""
    keys = ["arch", "dataset", "task", "preinverse", "split"]
    out = df.dropna(subset=["psnr_net_est"]).groupby(keys)["psnr_net_est"].agg(["mean", "std", "count"])
    return out.rename(columns={"mean": "psnr_net_est_mean", "std": "psnr_net_est_std", "count": "n"}).reset_index()


def make_table2_architectures(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Heat-map of PSNR(net, LE-MMSE) per architecture × (dataset, task); also writes ``.csv`` and ``.md``
    beside ``out_png``."""
    df, chosen = select_table2(inputs)
    table = table2_frame(df)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_png.with_suffix(".csv"), index=False, float_format="%.2f")
    md = table.assign(column=lambda t: t["dataset"] + " / " + t["task"] + " / " + t["preinverse"])
    lines = [f"PSNR(net, LE-MMSE) in dB, mean over σ and images (N = {chosen.get('train_size')}, P = {chosen['patch']})"
             + (f"; {config_label}" if config_label else ""), ""]
    for split in ordered(md["split"], ("train", "test")):
        piv = md[md["split"] == split].pivot_table(index="arch", columns="column", values="psnr_net_est_mean")
        piv = piv.reindex(ordered(piv.index, ARCH_ORDER))
        lines += [f"**{split}**", "", "| arch | " + " | ".join(piv.columns) + " |",
                  "|---|" + "---|" * len(piv.columns)]
        lines += ["| " + style.arch_label(a) + " | " + " | ".join(f"{v:.2f}" for v in piv.loc[a]) + " |"
                  for a in piv.index]
        lines.append("")
    out_png.with_suffix(".md").write_text("\n".join(lines))
    splits = ordered(table["split"], ("train", "test"))
    fig, axes = style.new_figure(1, len(splits), panel=(1.3 + 1.1 * md["column"].nunique(), 0.9 + 0.55 * md["arch"].nunique()))
    lo, hi = table["psnr_net_est_mean"].min(), table["psnr_net_est_mean"].max()
    image = None
    for ax, split in zip(axes[0], splits):
        piv = md[md["split"] == split].pivot_table(index="arch", columns="column", values="psnr_net_est_mean")
        piv = piv.reindex(ordered(piv.index, ARCH_ORDER))
        image = ax.imshow(piv.to_numpy(), cmap="viridis", vmin=lo, vmax=max(hi, lo + 1), aspect="auto")
        ax.set_xticks(range(piv.shape[1]), [c.replace(" / ", "\n") for c in piv.columns], fontsize=7)
        ax.set_yticks(range(piv.shape[0]), [style.arch_label(a) for a in piv.index])
        ax.grid(False)
        for (i, j), v in np.ndenumerate(piv.to_numpy()):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if v < (lo + hi) / 2 else "black")
        ax.set_title(f"{split} images")
    fig.colorbar(image, ax=axes[0].tolist(), label="PSNR(net, LE-MMSE) (dB)", shrink=0.9)
    style.save(fig, out_png, config_label=config_label,
               title=f"Table 2 — agreement per architecture (P = {chosen['patch']}, N = {chosen.get('train_size')})")


# ---------------------------------------------------------------------------------------------- fig 6
def select_fig6(inputs: FigureInputs):
    df, chosen = reference_slice(lemmse_metrics(inputs, "fig6_alignment_vs_density"), "fig6_alignment_vs_density")
    return require(df.dropna(subset=["neg_log_density_image_paper", "psnr_net_est"]),
                   "finite −log p(y) values (neg_log_density_image_paper)", "fig6_alignment_vs_density"), chosen


def make_fig6_alignment_vs_density(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """PSNR(net, LE-MMSE) per image against −log p(y) in the paper's convention (log-sum-exp of the
    logits −‖y − Ax_d‖²/2σ², no constants), coloured by σ, train ○ / test □."""
    df, chosen = select_fig6(inputs)
    probs = problems(df)
    fig, axes = style.new_figure(1, len(probs))
    sigmas = sorted(df["sigma"].unique())
    norm = style.log_norm(min(sigmas), max(sigmas)) if len(sigmas) > 1 else None
    scatter = None
    for ax, (task, pre) in zip(axes[0], probs):
        sub = fix(df, task=task, preinverse=pre)
        for split in ordered(sub["split"], ("train", "test")):
            part = fix(sub, split=split)
            scatter = ax.scatter(part["neg_log_density_image_paper"], part["psnr_net_est"], c=part["sigma"], cmap="viridis",
                                 norm=norm, marker=style.SPLIT_MARKERS.get(split, "o"), s=16, alpha=0.8,
                                 edgecolors="none", label=f"{split} images")
        ax.set_xscale("symlog", linthresh=100.0)  # densities span orders of magnitude across σ and splits
        ax.set_xlabel(style.DENSITY_IMAGE_LABEL + "\n(nats, symmetric log scale)")
        ax.set_ylabel("PSNR(net, LE-MMSE) (dB)")
        ax.set_title(inputs.problem_label(task, pre))
        ax.legend(loc="best")
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[0].tolist(), label="σ", shrink=0.9)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 6 — agreement against the measurement density ({describe(chosen)})")


# ---------------------------------------------------------------------------------------------- fig 7
def select_fig7(inputs: FigureInputs):
    m = fix(inputs.metrics, estimator="lemmse")
    ood = require(m[m["eval_dataset"] != m["dataset"]],
                  "out-of-distribution rows (eval_dataset different from dataset)", "fig7_ood")
    ood, chosen = reference_slice(ood, "fig7_ood")
    ind = fix(in_distribution(m), **chosen)
    return ood, ind, chosen


def make_fig7_ood(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """PSNR(net, LE-MMSE) and PSNR(·, truth) against σ on another data set's test images vs in-distribution."""
    ood, ind, chosen = select_fig7(inputs)
    probs = problems(ood)
    fig, axes = style.new_figure(2, len(probs))
    evals = ordered(ood["eval_dataset"])
    for col, (task, pre) in enumerate(probs):
        for row, quantities in enumerate((("psnr_net_est",), ("psnr_net_truth", "psnr_est_truth"))):
            ax = axes[row, col]
            for q in quantities:
                base = fix(ind, task=task, preinverse=pre, split="test")
                if not base.empty:
                    _band(ax, mean_by(base, ["sigma"], q), "sigma", style.QUANTITY_COLORS[q], "-",
                          f"{style.QUANTITY_LABELS[q]}, {chosen['dataset']} test (in-distribution)")
                for k, ev in enumerate(evals):
                    part = fix(ood, task=task, preinverse=pre, eval_dataset=ev, split="test")
                    if part.empty:
                        part = fix(ood, task=task, preinverse=pre, eval_dataset=ev)
                    _band(ax, mean_by(part, ["sigma"], q), "sigma", style.QUANTITY_COLORS[q], ["--", ":", "-."][k % 3],
                          f"{style.QUANTITY_LABELS[q]}, {ev} (OOD)", "s")
            style.sigma_axis(ax, ood["sigma"])
            ax.set_ylabel(style.PSNR_LABEL)
            ax.set_title(inputs.problem_label(task, pre) + (" — agreement" if row == 0 else " — reconstruction"))
    _legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label,
               title=f"Fig. 7 — out of distribution: trained on {chosen['dataset']} ({describe(chosen)})")


# ---------------------------------------------------------------------------------------------- fig 8
def select_fig8(inputs: FigureInputs):
    m = in_distribution(inputs.metrics)
    require(fix(m, estimator="smoothed"), "rows of a network against the smoothed LE-MMSE (estimator smoothed)",
            "fig8_smoothed")
    m = m[m["estimator"].isin(["lemmse", "smoothed"])]
    # the reference slice is chosen among the rows that have a smoothed estimator
    _, chosen = reference_slice(fix(m, estimator="smoothed"), "fig8_smoothed")
    m = fix(m, **chosen)
    require(fix(m, estimator="lemmse"), f"LE-MMSE rows beside the smoothed ones for {chosen}", "fig8_smoothed")
    return m, chosen


def make_fig8_smoothed(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Smoothed LE-MMSE vs LE-MMSE: agreement with the network and PSNR to the truth, against σ."""
    df, chosen = select_fig8(inputs)
    probs = problems(fix(df, estimator="smoothed"))
    fig, axes = style.new_figure(2, len(probs))
    variants = df[["estimator", "smoothing"]].drop_duplicates().sort_values(["estimator", "smoothing"]).itertuples(index=False)
    variants = list(variants)
    smooth_colors = style.sequential_colors(max(1, sum(v.estimator == "smoothed" for v in variants)), "winter")
    for col, (task, pre) in enumerate(probs):
        for row, q in enumerate(("psnr_net_est", "psnr_est_truth")):
            ax = axes[row, col]
            k = 0
            for v in variants:
                color = style.estimator_color("lemmse") if v.estimator == "lemmse" else smooth_colors[k]
                k += v.estimator == "smoothed"
                for split in ordered(df["split"], ("train", "test")):
                    part = fix(df, task=task, preinverse=pre, estimator=v.estimator, smoothing=v.smoothing, split=split)
                    if not part.empty:
                        _band(ax, mean_by(part, ["sigma"], q), "sigma", color, style.SPLIT_STYLES.get(split, ":"),
                              f"{style.estimator_label(v.estimator, v.smoothing)} ({split})",
                              style.SPLIT_MARKERS.get(split, "o"))
            style.sigma_axis(ax, df["sigma"])
            ax.set_ylabel("PSNR(net, estimator) (dB)" if row == 0 else "PSNR(estimator, truth) (dB)")
            ax.set_title(inputs.problem_label(task, pre))
    _legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 8 — smoothed LE-MMSE ({describe(chosen)})")


# --------------------------------------------------------------------------------------------- fig 17
def _lemmse_analytic(inputs: FigureInputs, figure: str) -> pd.DataFrame:
    return require(in_distribution(fix(inputs.analytic, estimator="lemmse")), "analytic LE-MMSE rows", figure)


def _needs_several(df: pd.DataFrame, column: str, figure: str) -> None:
    """Refuse unless some task × pre-inverse of ``df`` has at least two values of ``column``."""
    if df[column].nunique() < 2 or not problems_varying(df, column):
        raise LemmseInputError(f"{figure}: needs at least two values of {column} for one task and pre-inverse, "
                               f"the tables hold {sorted(df[column].unique().tolist())}")


def problems_varying(df: pd.DataFrame, column: str) -> list[tuple[str, str]]:
    """The (task, pre-inverse) pairs of ``df`` along which ``column`` takes several values."""
    return [(t, p) for t, p in problems(df) if fix(df, task=t, preinverse=p)[column].nunique() > 1]


def select_fig17(inputs: FigureInputs):
    df = _lemmse_analytic(inputs, "fig17_patch_density").dropna(subset=["neg_log_density_patch_paper"])
    df, chosen = reference_slice(require(df, "finite patch densities", "fig17_patch_density"), "fig17_patch_density",
                                 free=("patch", "arch"))
    _needs_several(df, "patch", "fig17_patch_density")
    return df, chosen


def _by_patch_per_sigma(ax, df: pd.DataFrame, value: str) -> None:
    sigmas = sorted(df["sigma"].unique())
    for color, s in zip(style.sequential_colors(len(sigmas)), sigmas):
        for split in ordered(df["split"], ("train", "test")):
            part = fix(df, sigma=s, split=split)
            if not part.empty:
                _band(ax, mean_by(part, ["patch"], value), "patch", color, style.SPLIT_STYLES.get(split, ":"),
                      f"σ = {s:g} ({split})", style.SPLIT_MARKERS.get(split, "o"))
    patches = sorted(df["patch"].unique())
    ax.set_xticks(patches)
    ax.set_xlabel("patch size P (pixels)")


def make_fig17_patch_density(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Mean over pixels of −s_{n'} (paper convention: log-sum-exp of the LE-MMSE logits, no constants) of the
    measured patches against P, train vs test, one line per σ."""
    df, chosen = select_fig17(inputs)
    probs = problems_varying(df, "patch")
    fig, axes = style.new_figure(1, len(probs))
    for ax, (task, pre) in zip(axes[0], probs):
        _by_patch_per_sigma(ax, fix(df, task=task, preinverse=pre), "neg_log_density_patch_paper")
        ax.set_ylabel(style.DENSITY_PATCH_LABEL)
        ax.set_title(inputs.problem_label(task, pre))
    _legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 17 — patch density against P ({describe(chosen)})")


# ------------------------------------------------------------------------------------------ fig 18-19
def select_fig18_19(inputs: FigureInputs):
    m, chosen = reference_slice(lemmse_metrics(inputs, "fig18_19_patch_size"), "fig18_19_patch_size", free=("patch",))
    _needs_several(m, "patch", "fig18_19_patch_size")
    a = fix(_lemmse_analytic(inputs, "fig18_19_patch_size"), dataset=chosen["dataset"], train_size=chosen["train_size"])
    return m, a, chosen


def make_fig18_19_patch_size(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """Top: PSNR(net, LE-MMSE) against P (Fig. 18); bottom: PSNR(LE-MMSE, truth) against P (Fig. 19); per σ."""
    m, a, chosen = select_fig18_19(inputs)
    probs = problems_varying(m, "patch")
    a = a[a["split"] == "test"]  # Fig. 19 is about test images (train images are reproduced exactly at small σ)
    fig, axes = style.new_figure(2, len(probs))
    for col, (task, pre) in enumerate(probs):
        _by_patch_per_sigma(axes[0, col], fix(m, task=task, preinverse=pre), "psnr_net_est")
        axes[0, col].set_ylabel("PSNR(net, LE-MMSE) (dB)")
        axes[0, col].set_title(f"Fig. 18 — {inputs.problem_label(task, pre)}")
        part = fix(a, task=task, preinverse=pre)
        if part.empty:
            axes[1, col].text(0.5, 0.5, "no analytic rows", ha="center", transform=axes[1, col].transAxes)
        else:
            _by_patch_per_sigma(axes[1, col], part, "psnr_est_truth")
        axes[1, col].set_ylabel("PSNR(LE-MMSE, truth), test (dB)")
        axes[1, col].set_title(f"Fig. 19 — {inputs.problem_label(task, pre)}")
    _legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 18–19 — patch size ({describe(chosen)})")


# ------------------------------------------------------------------------------------------- fig 26
def select_fig26(inputs: FigureInputs):
    df, chosen = reference_slice(lemmse_metrics(inputs, "fig26_dataset_size"), "fig26_dataset_size",
                                 free=("train_size",))
    _needs_several(df, "train_size", "fig26_dataset_size")
    return df, chosen


def make_fig26_dataset_size(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None:
    """PSNR(net, LE-MMSE) against the number of training images N, one line per σ, train vs test."""
    df, chosen = select_fig26(inputs)
    probs = problems_varying(df, "train_size")
    fig, axes = style.new_figure(1, len(probs))
    for ax, (task, pre) in zip(axes[0], probs):
        sub = fix(df, task=task, preinverse=pre)
        sigmas = sorted(sub["sigma"].unique())
        for color, s in zip(style.sequential_colors(len(sigmas)), sigmas):
            for split in ordered(sub["split"], ("train", "test")):
                part = fix(sub, sigma=s, split=split)
                if not part.empty:
                    _band(ax, mean_by(part, ["train_size"], "psnr_net_est"), "train_size", color,
                          style.SPLIT_STYLES.get(split, ":"), f"σ = {s:g} ({split})", style.SPLIT_MARKERS.get(split, "o"))
        sizes = sorted(sub["train_size"].unique())
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training images N")
        ax.set_ylabel("PSNR(net, LE-MMSE) (dB)")
        ax.set_title(inputs.problem_label(task, pre))
    _legend_below(fig, axes)
    style.save(fig, out_png, config_label=config_label, title=f"Fig. 26 — dataset size ({describe(chosen)})")
