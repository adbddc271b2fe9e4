"""The paper's figures, each from the gathered tables and the stores alone (never recomputing).

``FIGURES`` maps a figure name (the Snakemake target and PNG stem) to ``(function, caption)``;
every function is ``make(inputs: FigureInputs, out_png: Path, *, config_label: str = "") -> None``
and raises :class:`~lemmse.errors.LemmseInputError` naming what the tables lack when they do not
cover it. :func:`covered_figures` lists the figures the tables cover (it looks at key columns only,
so tables of the *planned* keys, values NaN, give the same answer as the gathered ones).
Captions are also in ``workflow/report/{name}.rst``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from lemmse.errors import LemmseInputError
from lemmse.figures import curves, images, variance
from lemmse.figures.inputs import DEFAULT_PREINVERSES, FigureInputs, StoreLayout

FigureFunction = Callable[..., None]

_CAPTIONS_DIR = Path(__file__).resolve().parents[2] / "workflow" / "report"

CAPTIONS: dict[str, str] = {
    "fig2_memorisation": (
        "**Memorisation (paper Fig. 2).** For denoising and deconvolution (B = I), one test image at a small σ: the "
        "measurement y, the MMSE, E-MMSE and LE-MMSE estimates, the training image nearest to the MMSE output and the "
        "truth; panel titles give each output's RMS distance to its nearest training image (from the analytic table). "
        "The right-hand plot shows that distance (mean over test images) against σ, with the truth's own distance as "
        "the reference level: MMSE (and E-MMSE, up to a shift) collapse onto training images at small σ while the "
        "LE-MMSE stays as far from the training set as the truth. The E-MMSE distance ignores circular shifts."),
    "fig4_preinverse_variance": (
        "**Pre-inverse and noise (paper Fig. 4).** Per-pixel variance of the LE-MMSE over K seeded noise draws of the "
        "same image (the variance stage), physics-agnostic B = I against physics-aware B = A⁺, for inpainting and "
        "deconvolution, with the mean estimate beside each map; colour scales are shared within a row. The paper "
        "expects A⁺ to lower the variance for inpainting (noise in the hole removed) and to raise it for deconvolution "
        "(noise amplified by the inverse blur)."),
    "fig5_psnr_vs_sigma": (
        "**Network against the formula (paper Fig. 5).** PSNR(network, LE-MMSE) (green, the agreement), "
        "PSNR(network, truth) (orange) and PSNR(LE-MMSE, truth) (blue) against σ (log axis), train images solid, test "
        "images dashed, one panel per task and pre-inverse; means over the evaluated images, bands ± one standard "
        "deviation. One reference slice: data set, architecture, patch size and training-set size named in the title."),
    "table2_architectures": (
        "**Architectures and data sets (paper Table 2).** Mean PSNR(network, LE-MMSE) over σ and images for every "
        "architecture × data set × task/pre-inverse of the sweep, train and test separately, at one patch size and "
        "training-set size; the same numbers are written as CSV and Markdown beside the PNG."),
    "fig6_alignment_vs_density": (
        "**Agreement and density (paper Fig. 6).** PSNR(network, LE-MMSE) of each image against −log p(y) in the "
        "paper's convention, −log Σ_d exp(−‖y − Ax_d‖²/2σ²) (the log-sum-exp of the logits, no Gaussian constants, "
        "no 1/N; nats), coloured by σ (log scale), train ○ and test □. The paper expects agreement to fall as "
        "−log p(y) rises (low-density measurements). The normalised density (constants included) is the table "
        "column neg_log_density_image_normalised; its σ-trend is the opposite and it is not plotted."),
    "fig7_ood": (
        "**Out of distribution (paper Fig. 7 / 25).** Networks and LE-MMSE trained on one data set and evaluated on "
        "another's test images (dashed/dotted), against the in-distribution test images (solid): agreement "
        "PSNR(network, LE-MMSE) on top, reconstruction PSNRs below, against σ (log axis)."),
    "fig8_smoothed": (
        "**Smoothed LE-MMSE (paper Fig. 8).** The Monte-Carlo smoothed LE-MMSE (each smoothing s) against the plain "
        "LE-MMSE: agreement with the network (top) and PSNR to the truth (bottom) against σ, train solid, test dashed. "
        "The paper reports that smoothing improves both."),
    "fig13_gallery": (
        "**Gallery (paper Fig. 13–16).** For each task/pre-inverse and split, one image at a middle σ: the measurement y, "
        "the pre-inverted B y, the output of every architecture (title: its PSNR to the LE-MMSE), the LE-MMSE and "
        "the truth."),
    "fig17_patch_density": (
        "**Patch density (paper Fig. 17).** Mean over pixels of −s_n'(y), the paper's convention: s_n' is the "
        "log-sum-exp of the LE-MMSE logits −½‖Q_n'By − Q_nBAx_d‖²_Σ⁺/σ² (the LE-MMSE normaliser, no Gaussian "
        "constants, no 1/(D·H·W); nats), against the patch size P, one line per σ, train solid and test dashed: "
        "larger patches live in a sparser space."),
    "fig18_19_patch_size": (
        "**Patch size (paper Fig. 18 and 19).** Top: PSNR(network, LE-MMSE) against P; bottom: PSNR(LE-MMSE, truth) "
        "against P; one line per σ, train solid and test dashed. The paper expects smaller patches to agree better, "
        "and on test images small P to reconstruct best at small σ and large P at large σ."),
    "fig20_22_mass": (
        "**Mass concentration (paper Fig. 20–22).** Left: the number of training patches holding 99 % of the LE-MMSE "
        "weight over the observed pixels (stratum rank > 0: every pixel for B = I; fully hidden pixels, where the "
        "count is ⌈0.99·D·S₀⌉ by construction, are left out) — its per-image mean (top) and median (bottom), "
        "averaged over test images, log axis — against σ, physics-agnostic B = I solid and "
        "physics-aware dash-dot. Right: the per-pixel count for one test image at a few σ (log colour scale): at small "
        "σ one or a few patches carry the estimate."),
    "fig23_patchwork": (
        "**Patchwork (paper Fig. 23–24).** For one test image per task, at the largest patch size P the sweep has "
        "for that task and pre-inverse: the LE-MMSE estimate at a few σ and, below it, the source map of the "
        "paper's §D.5 — the training image owning a single patch that holds ≥ 50 % of the LE-MMSE weight at each "
        "pixel (one colour per training image, white where no single patch does). Contiguous regions copied from one "
        "training image show the patchwork; they dissolve as σ grows."),
    "fig26_dataset_size": (
        "**Dataset size (paper Fig. 26).** PSNR(network, LE-MMSE) against the number of training images N (log axis), "
        "one line per σ, train solid and test dashed; the paper reports little influence of N."),
}

FIGURES: dict[str, tuple[FigureFunction, str]] = {
    "fig2_memorisation": (images.make_fig2_memorisation, CAPTIONS["fig2_memorisation"]),
    "fig4_preinverse_variance": (variance.make_fig4_preinverse_variance, CAPTIONS["fig4_preinverse_variance"]),
    "fig5_psnr_vs_sigma": (curves.make_fig5_psnr_vs_sigma, CAPTIONS["fig5_psnr_vs_sigma"]),
    "table2_architectures": (curves.make_table2_architectures, CAPTIONS["table2_architectures"]),
    "fig6_alignment_vs_density": (curves.make_fig6_alignment_vs_density, CAPTIONS["fig6_alignment_vs_density"]),
    "fig7_ood": (curves.make_fig7_ood, CAPTIONS["fig7_ood"]),
    "fig8_smoothed": (curves.make_fig8_smoothed, CAPTIONS["fig8_smoothed"]),
    "fig13_gallery": (images.make_fig13_gallery, CAPTIONS["fig13_gallery"]),
    "fig17_patch_density": (curves.make_fig17_patch_density, CAPTIONS["fig17_patch_density"]),
    "fig18_19_patch_size": (curves.make_fig18_19_patch_size, CAPTIONS["fig18_19_patch_size"]),
    "fig20_22_mass": (images.make_fig20_22_mass, CAPTIONS["fig20_22_mass"]),
    "fig23_patchwork": (images.make_fig23_patchwork, CAPTIONS["fig23_patchwork"]),
    "fig26_dataset_size": (curves.make_fig26_dataset_size, CAPTIONS["fig26_dataset_size"]),
}

def _covers_fig17(inputs: FigureInputs):
    df, chosen = curves.reference_slice(curves._lemmse_analytic(inputs, "fig17_patch_density"), "fig17_patch_density",
                                        free=("patch", "arch"))
    curves._needs_several(df, "patch", "fig17_patch_density")


#: name -> the check each figure's data needs, on key columns only (raises LemmseInputError when not covered).
_COVERAGE = {
    "fig2_memorisation": images.select_fig2,
    "fig5_psnr_vs_sigma": curves.select_fig5,
    "table2_architectures": curves.select_table2,
    "fig6_alignment_vs_density": curves.select_fig5,
    "fig7_ood": curves.select_fig7,
    "fig8_smoothed": curves.select_fig8,
    "fig13_gallery": images.select_fig13,
    "fig17_patch_density": _covers_fig17,
    "fig18_19_patch_size": curves.select_fig18_19,
    "fig20_22_mass": images.select_fig23,
    "fig23_patchwork": images.select_fig23,
    "fig26_dataset_size": curves.select_fig26,
}


def coverage(metrics: pd.DataFrame, analytic: pd.DataFrame, *, variance: bool = False,
             preinverses=None) -> dict[str, str | None]:
    """name -> ``None`` when the tables cover the figure, else the reason it is not covered.

    Only key columns are looked at, so ``metrics``/``analytic`` may be the planned rows of a config
    (values NaN). ``variance``: whether the config runs the variance stage (fig4).
    """
    inputs = FigureInputs(metrics, analytic, StoreLayout(Path(".")), dict(preinverses or DEFAULT_PREINVERSES),
                          variance_stores={})
    out: dict[str, str | None] = {}
    for name in FIGURES:
        if name == "fig4_preinverse_variance":
            out[name] = None if variance else "the variance stage is not run (no fig4 noise draws)"
            continue
        try:
            _COVERAGE[name](inputs)
            out[name] = None
        except LemmseInputError as err:
            out[name] = str(err)
    return out


def covered_figures(metrics: pd.DataFrame, analytic: pd.DataFrame, *, variance: bool = False,
                    preinverses=None) -> list[str]:
    """Names of the figures (registry order) the tables cover; see :func:`coverage`."""
    return [name for name, why in coverage(metrics, analytic, variance=variance, preinverses=preinverses).items()
            if why is None]


def make_figure(name: str, inputs: FigureInputs, out_png: str | Path, *, config_label: str = "") -> Path:
    """Render figure ``name`` of :data:`FIGURES` to ``out_png``."""
    if name not in FIGURES:
        raise LemmseInputError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    FIGURES[name][0](inputs, Path(out_png), config_label=config_label)
    return Path(out_png)


def write_captions(folder: str | Path = _CAPTIONS_DIR) -> list[Path]:
    """Write ``{folder}/{name}.rst`` for every figure (the workflow's ``report:`` captions)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (_, caption) in FIGURES.items():
        path = folder / f"{name}.rst"
        path.write_text(caption + "\n")
        paths.append(path)
    return paths


__all__ = ["FIGURES", "CAPTIONS", "FigureInputs", "StoreLayout", "coverage", "covered_figures", "make_figure",
           "write_captions"]
