"""One look for every figure: colours per architecture / estimator / quantity, σ axes, image panels.

Every figure imports its colours from here, so UNet is the same blue and LE-MMSE the same black
in every PNG of the report.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: figures are files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 150

#: Architectures (tab10, fixed).
ARCH_COLORS = {"unet": "#1f77b4", "resnet": "#9467bd", "patchmlp": "#8c564b"}
ARCH_LABELS = {"unet": "UNet", "resnet": "ResNet", "patchmlp": "PatchMLP"}
#: Analytic estimators.
ESTIMATOR_COLORS = {"mmse": "#d62728", "emmse": "#ff7f0e", "lemmse": "#222222", "smoothed": "#17becf"}
ESTIMATOR_LABELS = {"mmse": "MMSE", "emmse": "E-MMSE", "lemmse": "LE-MMSE", "smoothed": "smoothed LE-MMSE"}
#: The three PSNRs of Fig. 5 (the paper: agreement green, reconstruction orange and blue).
QUANTITY_COLORS = {"psnr_net_est": "#2ca02c", "psnr_net_truth": "#ff7f0e", "psnr_est_truth": "#1f77b4"}
QUANTITY_LABELS = {"psnr_net_est": "PSNR(net, LE-MMSE)", "psnr_net_truth": "PSNR(net, truth)",
                   "psnr_est_truth": "PSNR(LE-MMSE, truth)"}
#: Splits: train solid, test dashed (everywhere).
SPLIT_STYLES = {"train": "-", "test": "--"}
SPLIT_MARKERS = {"train": "o", "test": "s"}
#: Tasks (used where tasks share an axis).
TASK_COLORS = {"denoising": "#1f77b4", "inpainting": "#2ca02c", "deconvolution": "#d62728"}
#: Physics-agnostic (B = I) solid, physics-aware (any other B) dash-dot.
AGNOSTIC_STYLE, AWARE_STYLE = "-", "-."

PSNR_LABEL = "PSNR (dB)"
SIGMA_LABEL = "noise level σ (images in [0, 1])"
#: Density axes say which convention (MATH.md "Diagnostics"): the paper's has no Gaussian constants.
DENSITY_IMAGE_LABEL = "−log p(y), paper convention: −log Σ_d exp(−‖y − Ax_d‖²/2σ²), no constants"
DENSITY_PATCH_LABEL = ("patch −log p (paper convention: −log-sum-exp\nof the LE-MMSE logits, no constants; "
                       "mean over pixels, nats)")
MASS_OBSERVED_LABEL = "patches holding 99 % of the weight\n(over observed pixels: {statistic} per image, mean over images)"

plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "figure.dpi": DPI, "savefig.dpi": DPI,
})


def arch_color(arch: str) -> str:
    return ARCH_COLORS.get(arch, "#7f7f7f")


def arch_label(arch: str) -> str:
    return ARCH_LABELS.get(arch, arch)


def estimator_color(estimator: str) -> str:
    return ESTIMATOR_COLORS.get(estimator, "#7f7f7f")


def estimator_label(estimator: str, smoothing: float = 0.0) -> str:
    label = ESTIMATOR_LABELS.get(estimator, estimator)
    return f"{label} (s = {smoothing:g})" if estimator == "smoothed" and smoothing else label


def sequential_colors(n: int, cmap: str = "viridis") -> list:
    """``n`` colours along a sequential map (for σ, P or N series), avoiding the pale end."""
    return [plt.get_cmap(cmap)(v) for v in np.linspace(0.0, 0.85, max(n, 1))][:n]


def sigma_axis(ax, sigmas) -> None:
    """σ on a log axis with the measured values as ticks."""
    ax.set_xscale("log")
    ax.set_xlabel(SIGMA_LABEL)
    sig = sorted(set(float(s) for s in sigmas))
    if 1 <= len(sig) <= 8:
        ax.set_xticks(sig)
        ax.set_xticklabels([f"{s:g}" for s in sig])
        ax.minorticks_off()


def image_panel(ax, img, title: str | None = None, *, cmap="gray", vmin=0.0, vmax=1.0):
    """Show a (C, H, W) or (H, W) image without axes; colour images are clipped to [0, 1]."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    if arr.ndim == 3:
        handle = ax.imshow(np.clip(arr, 0.0, 1.0), interpolation="nearest")
    else:
        handle = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=8)
    return handle


#: Characters of a 10 pt title per inch of figure width (wrapping in :func:`save`).
TITLE_CHARS_PER_INCH = 12
#: Narrowest figure (inches) :func:`new_figure` makes.
MIN_FIGURE_WIDTH = 6.0


def new_figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (3.6, 2.8), **kwargs):
    """A figure of ``nrows × ncols`` panels of about ``panel`` inches each (constrained layout), at
    least :data:`MIN_FIGURE_WIDTH` wide (one-column figures would squeeze their title and legend)."""
    width = max(panel[0] * ncols, MIN_FIGURE_WIDTH)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, panel[1] * nrows), squeeze=False,
                             layout="constrained", **kwargs)
    return fig, axes


def save(fig, out_png, *, config_label: str = "", title: str | None = None) -> None:
    """Title (with the configuration label) and write ``out_png`` (folders created), then close.

    The title is wrapped to the figure's width (about 12 characters per inch at 10 pt), so that a
    figure of one or two panels does not carry a title several times wider than itself."""
    import textwrap
    from pathlib import Path

    text = " — ".join(t for t in (title, config_label) if t)
    if text:
        width = max(40, int(fig.get_figwidth() * TITLE_CHARS_PER_INCH))
        fig.suptitle(textwrap.fill(text, width=width), fontsize=10)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def log_norm(vmin: float, vmax: float):
    from matplotlib.colors import LogNorm

    vmin = max(float(vmin), 1e-12)
    return LogNorm(vmin=vmin, vmax=max(float(vmax), vmin * 10))
