"""The paper's figures, each a pure reader of the gathered tables (and, for images, the stores).

Every figure is two steps: :mod:`lemmse.figures.select` (pandas only) returns the tidy frame it plots
— its facets, series, the axes it fixes from the configured :class:`Reference`, and the stores it
reads — and a drawing function (:mod:`lemmse.figures.curves`, :mod:`lemmse.figures.images`,
:mod:`lemmse.figures.variance`, which import matplotlib) draws every facet combination of it.
Importing this package does not import matplotlib (the workflow builds its DAG from
:func:`coverage` and :func:`figure_stores`).

``FIGURES`` maps a figure name (the Snakemake target and PNG stem) to its :class:`Figure`;
:func:`coverage` says which figures the tables cover and why the others are not (it looks at key
columns only, so the *planned* tables of a config, values NaN, give the same answer as the gathered
ones). The workflow's report captions ``workflow/report/{name}.rst`` are written from :data:`CAPTIONS`
(:func:`write_captions`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from lemmse.errors import LemmseInputError
from lemmse.figures.inputs import DEFAULT_PREINVERSES, FigureInputs, StoreLayout
from lemmse.figures.select import SELECTORS, Reference, Selection, select

CAPTIONS: dict[str, str] = {
    "fig1_overview": (
        "**Overview (paper Fig. 1).** Trained networks output the LE-MMSE across tasks: at the reference data set, "
        "patch size P and training-set size N (figures.reference; by default the noise study's own), one row per "
        "task/pre-inverse, one test image at a middle σ: the measurement y, the output of every architecture (title: "
        "its PSNR to the LE-MMSE), the LE-MMSE and the truth. The gallery (Fig. 13–16) shows every data set and P."),
    "fig2_memorisation": (
        "**Memorisation (paper Fig. 2).** One row per data set and problem of the memorisation section (B = I, "
        "denoising and deconvolution), one test image at a small σ: the measurement y, the MMSE, E-MMSE and LE-MMSE "
        "estimates, the training image nearest to the MMSE output and the truth; panel titles give each output's RMS "
        "distance to its nearest training image (from the analytic table). The right-hand plot shows that distance "
        "(mean over test images) against σ, with the truth's own distance as the reference level: MMSE (and E-MMSE, "
        "up to a shift) collapse onto training images at small σ while the LE-MMSE stays as far from the training set "
        "as the truth. The E-MMSE distance ignores circular shifts."),
    "fig3_emmse": (
        "**E-MMSE, physics-agnostic against physics-aware (paper Fig. 3, Cor. 3.7).** The E-MMSE (all circular "
        "shifts of the training images compete) with B = I and with B = A⁺ on the same y, side by side with their "
        "absolute difference (title: the PSNR between them; one colour scale for every difference), for deconvolution "
        "— an invertible circular convolution (the Gaussian blur's spectrum has no zero, so A⁺ = A⁻¹ and no frequency "
        "is cut): the two coincide — and for inpainting — a mask, not a convolution: they differ (B = A⁺ allows only "
        "the shifts that keep the hole in place; at small σ both may copy the same training image, so they differ at "
        "larger σ). One test image at three σ spread over the grid (smallest, middle, largest), at the memorisation "
        "section's N. Memorisation of the augmented set: each output's RMS distance to the nearest circularly shifted "
        "training image (d_aug; shift-aware, as the memorisation table), and that shifted training image for B = I."),
    "fig4_preinverse_variance": (
        "**Pre-inverse and noise (paper Fig. 4).** Per-pixel variance of the LE-MMSE over K seeded noise draws of the "
        "same image (the variance stage), physics-agnostic B = I against physics-aware B = A⁺, for inpainting and "
        "deconvolution, with the mean estimate beside each map; colour scales are shared within a row. The paper "
        "expects A⁺ to lower the variance for inpainting (noise in the hole removed) and to raise it for deconvolution "
        "(noise amplified by the inverse blur)."),
    "fig5_psnr_vs_sigma": (
        "**Network against the formula (paper Fig. 5 and 10–12).** PSNR(network, LE-MMSE) (green, the agreement), "
        "PSNR(network, truth) (orange) and PSNR(LE-MMSE, truth) (blue) against σ (log axis), train images solid, test "
        "images dashed; one row of panels per data set × architecture, one panel per task and pre-inverse the sweep "
        "holds (an empty panel: not in the sweep); means over the evaluated images, bands ± one standard deviation. "
        "Patch size P and training-set size N are the configured reference (figures.reference; by default the noise "
        "study's own), named in the title. The curves are the σ-conditioned networks of the paper (trained on a σ "
        "range); where a study also trains networks at one fixed σ (train_sigmas), each is a point at its own σ "
        "(stars: test, diamonds: train) in the colour of its quantity."),
    "fig9_other_datasets": (
        "**Other data sets, e.g. 64×64 (paper Fig. 9 and 27).** The curves of Fig. 5 — PSNR(network, LE-MMSE) green, "
        "PSNR(network, truth) orange, PSNR(LE-MMSE, truth) blue, train solid, test dashed, against σ — for every "
        "data set the reference slice of Fig. 5 does not hold (in the paper's sweep: FFHQ at 64×64 with P = 11), "
        "each at the patch size and training-set size it has; one row per data set × architecture × P × N, one "
        "panel per problem. The gallery (Fig. 13–16) shows its images."),
    "table2_architectures": (
        "**Architectures and data sets (paper Table 2).** Mean PSNR(network, LE-MMSE) over σ and images for every "
        "architecture × data set × task/pre-inverse of the sweep, train and test separately, at the reference patch "
        "size and training-set size (figures.reference); the same numbers are written as CSV and Markdown beside "
        "the PNG."),
    "fig6_alignment_vs_density": (
        "**Agreement and density (paper Fig. 6).** PSNR(network, LE-MMSE) of each image against −log p(y) in the "
        "paper's convention, −log Σ_d exp(−‖y − Ax_d‖²/2σ²) (the log-sum-exp of the logits, no Gaussian constants, "
        "no 1/N; nats), coloured by σ (log scale), train ○ and test □; one row per data set × architecture, one panel "
        "per problem, at the reference P and N. The paper expects agreement to fall as −log p(y) rises (low-density "
        "measurements). The normalised density (constants included) is the table column "
        "neg_log_density_image_normalised; its σ-trend is the opposite and it is not plotted."),
    "fig7_ood": (
        "**Out of distribution (paper Fig. 7).** A network trained on one data set and the LE-MMSE of the same "
        "training set, both applied to a test image of another data set (the OOD study: trained on FFHQ, evaluated on "
        "CIFAR-10 in the paper), at a few σ: the measurement y, the network output (title: its PSNR to the LE-MMSE) "
        "and the LE-MMSE, with the truth on the left; one block per (trained on → evaluated on) × architecture × "
        "P × N × problem the sweep holds."),
    "fig8_smoothed": (
        "**Smoothed LE-MMSE (paper Fig. 8).** The Monte-Carlo smoothed LE-MMSE (each smoothing s) against the plain "
        "LE-MMSE: agreement with the network (top) and PSNR to the truth (bottom) against σ, train solid, test dashed; "
        "one column per data set × architecture × P × N × problem holding a smoothed estimator. The paper reports "
        "that smoothing improves both."),
    "fig13_gallery": (
        "**Gallery (paper Fig. 13–16).** For every data set × patch size P the sweep holds (at the reference N), "
        "for each task/pre-inverse and split, one image at a middle σ: the measurement y, the pre-inverted B y (the "
        "configured operator), the output of every architecture (title: its PSNR to the LE-MMSE), the LE-MMSE and "
        "the truth."),
    "fig17_patch_density": (
        "**Patch density (paper Fig. 17).** Mean over pixels of −s_n'(y), the paper's convention: s_n' is the "
        "log-sum-exp of the LE-MMSE logits −½‖Q_n'By − Q_nBAx_d‖²_Σ⁺/σ² (the LE-MMSE normaliser, no Gaussian "
        "constants, no 1/(D·H·W); nats), against the patch size P, one line per σ, train solid and test dashed; one "
        "panel per data set × problem along which P varies, at the reference N: larger patches live in a sparser "
        "space."),
    "fig18_19_patch_size": (
        "**Patch size (paper Fig. 18 and 19).** One column per data set × problem along which P varies (at the "
        "reference N). Top row(s): PSNR(network, LE-MMSE) against P, one row per architecture (Fig. 18); then "
        "PSNR(LE-MMSE, truth) against P on test images and on train images (Fig. 19, both panels); one line per σ, "
        "train solid and test dashed. The paper expects smaller patches to agree better, on test images small P to "
        "reconstruct best at small σ and large P at large σ, and on train images a blow-up at small σ (the formula "
        "copies the right patches)."),
    "fig20_22_mass": (
        "**Mass concentration (paper Fig. 20–22).** For every data set (at the reference P and N). Left: the number "
        "of training patches holding 99 % of the LE-MMSE weight over the observed pixels (stratum rank > 0: every "
        "pixel for B = I; fully hidden pixels, where the count is ⌈0.99·D·S₀⌉ by construction, are left out) — its "
        "per-image mean (top) and median (bottom), averaged over test images, log axis — against σ, physics-agnostic "
        "B = I solid and physics-aware dash-dot. Right: the per-pixel count for one test image at a few σ (log colour "
        "scale, every pixel): at small σ one or a few patches carry the estimate."),
    "fig23_patchwork": (
        "**Patchwork (paper Fig. 23, FFHQ-32 in the paper).** On the reference data set (figures.reference; by "
        "default the noise study's first), for every problem, at the largest patch size P the sweep has for it (at the "
        "reference N), one test image: the LE-MMSE estimate at a few σ and, below it, the source map of the paper's "
        "§D.5 — the training image owning a single patch that holds ≥ 50 % of the LE-MMSE weight at each pixel (one "
        "colour per training image, white where no single patch does). Contiguous regions copied from one training "
        "image show the patchwork; they dissolve as σ grows. Fig. 24 shows the other data sets."),
    "fig24_patchwork": (
        "**Patchwork, other data sets (paper Fig. 24, FashionMNIST in the paper).** The patchwork of Fig. 23 — the "
        "LE-MMSE estimate at a few σ above its single-patch source map (the training image owning a patch with "
        "≥ 50 % of the weight at each pixel; white: none), one test image, the largest P per problem at the "
        "reference N — for every training data set other than the reference one that has LE-MMSE stores with the "
        "source diagnostic."),
    "fig25_ood_psnr": (
        "**Out of distribution, PSNRs (paper Fig. 25).** Networks and LE-MMSE trained on one data set and evaluated "
        "on another's test images (dashed), against the same networks on their own test images (solid): agreement "
        "PSNR(network, LE-MMSE) on top, reconstruction PSNRs below, against σ (log axis); one column per (trained on → "
        "evaluated on) × architecture × P × N × problem the sweep holds."),
    "fig26_dataset_size": (
        "**Dataset size (paper Fig. 26).** PSNR(network, LE-MMSE) against the number of training images N (log axis), "
        "one line per σ, train solid and test dashed; one panel per data set × architecture × problem along which N "
        "varies, at the reference P; the paper reports little influence of N."),
}

@dataclass(frozen=True)
class Figure:
    """One figure: its drawing function (``module:function`` of this package, imported when drawn) and caption."""

    draw: str
    caption: str

    def drawer(self) -> Callable[..., None]:
        import importlib

        module, function = self.draw.split(":")
        return getattr(importlib.import_module(f"lemmse.figures.{module}"), function)


_DRAW = {
    "fig1_overview": "images:draw_fig1",
    "fig2_memorisation": "images:draw_fig2",
    "fig3_emmse": "images:draw_fig3",
    "fig4_preinverse_variance": "variance:make_fig4_preinverse_variance",
    "fig5_psnr_vs_sigma": "curves:draw_fig5",
    "fig9_other_datasets": "curves:draw_fig5",
    "table2_architectures": "curves:draw_table2",
    "fig6_alignment_vs_density": "curves:draw_fig6",
    "fig7_ood": "images:draw_fig7",
    "fig8_smoothed": "curves:draw_fig8",
    "fig13_gallery": "images:draw_fig13",
    "fig17_patch_density": "curves:draw_fig17",
    "fig18_19_patch_size": "curves:draw_fig18_19",
    "fig20_22_mass": "images:draw_fig20_22",
    "fig23_patchwork": "images:draw_fig23",
    "fig24_patchwork": "images:draw_fig24",
    "fig25_ood_psnr": "curves:draw_fig25",
    "fig26_dataset_size": "curves:draw_fig26",
}

FIGURES: dict[str, Figure] = {name: Figure(draw, CAPTIONS[name]) for name, draw in _DRAW.items()}

#: The fig4 variance stage has no table selection: it reads the variance stores the config asks for.
VARIANCE_FIGURE = "fig4_preinverse_variance"


def _inputs(metrics: pd.DataFrame, analytic: pd.DataFrame, preinverses) -> FigureInputs:
    return FigureInputs(metrics, analytic, StoreLayout(Path(".")), dict(preinverses or DEFAULT_PREINVERSES),
                        variance_stores={})


def selections(metrics: pd.DataFrame, analytic: pd.DataFrame, *, config: Mapping[str, Any] | None = None,
               reference: Reference | None = None, preinverses=None) -> dict[str, Selection | str]:
    """name -> the figure's :class:`Selection`, or the reason the tables do not cover it (fig4 excluded).

    ``config``: the workflow config (its ``preinverses`` and ``figures.reference``); ``reference`` and
    ``preinverses`` override what it gives."""
    config = config or {}
    ref = reference or Reference.from_config(config)
    inputs = _inputs(metrics, analytic, preinverses or config.get("preinverses"))
    out: dict[str, Selection | str] = {}
    for name in SELECTORS:
        try:
            out[name] = select(name, inputs, ref)
        except LemmseInputError as err:
            out[name] = str(err)
    return out


def coverage(metrics: pd.DataFrame, analytic: pd.DataFrame, *, variance: bool = False, preinverses=None,
             config: Mapping[str, Any] | None = None, reference: Reference | None = None) -> dict[str, str | None]:
    """name -> ``None`` when the tables cover the figure, else the reason it is not covered.

    Only key columns are looked at, so ``metrics``/``analytic`` may be the planned rows of a config
    (values NaN). ``variance``: whether the config runs the variance stage (fig4)."""
    chosen = selections(metrics, analytic, config=config, reference=reference, preinverses=preinverses)
    out: dict[str, str | None] = {}
    for name in FIGURES:
        if name == VARIANCE_FIGURE:
            out[name] = None if variance else "the variance stage is not run (config section variance.dataset is null)"
        else:
            out[name] = None if isinstance(chosen[name], Selection) else chosen[name]
    return out


def covered_figures(metrics: pd.DataFrame, analytic: pd.DataFrame, *, variance: bool = False, preinverses=None,
                    config: Mapping[str, Any] | None = None, reference: Reference | None = None) -> list[str]:
    """Names of the figures (registry order) the tables cover; see :func:`coverage`."""
    return [name for name, why in coverage(metrics, analytic, variance=variance, preinverses=preinverses,
                                           config=config, reference=reference).items() if why is None]


def make_figure(name: str, inputs: FigureInputs, out_png: str | Path, *, config_label: str = "",
                reference: Reference | None = None) -> Path:
    """Select then draw figure ``name`` of :data:`FIGURES` to ``out_png``; an uncovered figure raises
    :class:`~lemmse.errors.LemmseInputError` naming what is missing, before anything is written."""
    if name not in FIGURES:
        raise LemmseInputError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    draw = FIGURES[name].drawer()
    if name == VARIANCE_FIGURE:
        draw(inputs, Path(out_png), config_label=config_label)
    else:
        draw(select(name, inputs, reference or Reference()), inputs, Path(out_png), config_label=config_label)
    return Path(out_png)


def write_coverage(covered, skipped: Mapping[str, str], out: str | Path) -> Path:
    """Write the Markdown list of the covered figures and of the skipped ones with their reasons."""
    lines = ["# Figures of this configuration", "", f"Covered ({len(covered)} of {len(FIGURES)}): each a target "
             "and a PNG under figures/.", ""]
    lines += [f"- `{name}`" for name in covered]
    lines += ["", f"Not covered ({len(skipped)}): asking for one by target fails with the same reason.", ""]
    lines += [f"- `{name}`: {why}" for name, why in skipped.items()] or ["- none"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def write_captions(folder: str | Path) -> list[Path]:
    """Write ``{folder}/{name}.rst`` for every figure: the captions of the workflow's ``report:``
    (``workflow/report/``; a test checks the committed files equal :data:`CAPTIONS`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, figure in FIGURES.items():
        path = folder / f"{name}.rst"
        path.write_text(figure.caption + "\n")
        paths.append(path)
    return paths


__all__ = ["FIGURES", "CAPTIONS", "VARIANCE_FIGURE", "Figure", "FigureInputs", "Reference", "Selection", "StoreLayout", "coverage",
           "covered_figures", "make_figure", "selections", "write_captions", "write_coverage"]
