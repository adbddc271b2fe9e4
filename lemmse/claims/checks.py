r"""The paper's claims, each a check on matched cells (:mod:`lemmse.claims.stats`).

Every check selects the rows its claim is about, summarises each cell (all sweep coordinates
fixed, images varying) and compares cells only along the axis of the claim: σ for a trend over
noise, P for patch size, N for data set size, the split for the train/test gap, the architecture
pair for net-vs-net. Unless a claim is about another estimator or data set, rows are networks
against the plain LE-MMSE on their own data set (``estimator == "lemmse"``,
``eval_dataset == dataset``). A check raises :class:`NotCovered` with the reason when the tables
cannot test it; its verdict compares the statistic's point value with the threshold stated in
its wording, and its interval is the stratified bootstrap over images.
"""
from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lemmse.claims.core import (DENSITY_IMAGE, DENSITY_PATCH, EST_CONFIG, MASS, NET_CONFIG, PATCHWORK, Inputs,
                                Outcome, claim, outcome)
from lemmse.claims.stats import (Cells, NotCovered, bootstrap, cell_summaries, ends, mean_stat, others,
                                 pooled_psnr_stat, spearman_stat)

MCELL = (*NET_CONFIG, "sigma", "split")
ACELL = (*EST_CONFIG, "sigma", "split")


# ------------------------------------------------------------------------------------------ helpers
def _columns(df: pd.DataFrame | None, columns: Sequence[str], what: str) -> pd.DataFrame:
    if df is None or df.empty:
        raise NotCovered(f"no {what}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise NotCovered(f"the {what} lack the column(s) {', '.join(missing)}")
    return df


def _net(inp: Inputs, value: str = "psnr_net_est") -> pd.DataFrame:
    """Networks against the plain LE-MMSE on their own data set."""
    m = _columns(inp.metrics, [*MCELL, value], "metrics rows")
    m = m[(m["estimator"] == "lemmse") & (m["eval_dataset"] == m["dataset"])].dropna(subset=[value])
    if m.empty:
        raise NotCovered("no in-distribution network-vs-LE-MMSE rows")
    return m


def _lemmse(inp: Inputs, value: str) -> pd.DataFrame:
    """Analytic LE-MMSE rows on their own data set having ``value``."""
    a = _columns(inp.analytic, [*ACELL, value], "analytic rows")
    a = a[(a["estimator"] == "lemmse") & (a["eval_dataset"] == a["dataset"])].dropna(subset=[value])
    if a.empty:
        raise NotCovered(f"no analytic LE-MMSE rows with {value}")
    return a


def _cells(inp: Inputs, df: pd.DataFrame, keys: Sequence[str], columns: Sequence[str], cid: str,
           stat: Callable[[np.ndarray], np.ndarray] = mean_stat, min_images: int = 1) -> Cells:
    s = inp.settings
    return cell_summaries(df, keys, columns, claim=cid, reps=s.reps, seed=s.seed, stat=stat, min_images=min_images)


def _boot(inp: Inputs, cells: Cells, per_group: Callable[[pd.Series], pd.Series],
          reduce: str) -> tuple[float, float, float]:
    value, low, high = bootstrap(cells, per_group, reduce, inp.settings.level)
    if np.isnan(value):  # ±∞ is a value (e.g. the PSNR of identical outputs), NaN means nothing to compare
        raise NotCovered("no cells to compare along the axis of the claim")
    return value, low, high


def _amplified(inp: Inputs, df: pd.DataFrame) -> pd.Series:
    """Rows of deconvolution with B = A⁺: A⁺ multiplies the noise by up to 1/min|â| (≈ 5·10³ for the
    Gaussian blur), so their smallest σ is no low noise in B y (the paper notes their higher mass, §D.4)."""
    return (df["task"] == "deconvolution") & (df["preinverse"].map(inp.kind) == "pinv")


def _other(levels: Sequence[str], *drop: str) -> list[str]:
    return [k for k in levels if k not in drop]


def _name(key, names: Sequence[str], skip: Sequence[str] = ("eval_dataset", "estimator", "smoothing")) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{n}={v}" for n, v in zip(names, key) if n not in skip)


def _same(x: pd.Series) -> pd.Series:
    return x


def _split_gap(x: pd.Series) -> pd.Series:
    """train − test, per group of every other level."""
    return (x.xs("train", level="split") - x.xs("test", level="split")).dropna()


# ---------------------------------------------------------------------------------------- agreement
def _agreement(inp: Inputs, cid: str, m: pd.DataFrame) -> Outcome:
    thr = inp.settings.agreement_db
    cells = _cells(inp, m, MCELL, ["psnr_net_est"], cid)
    value, lo, hi = _boot(inp, cells, _same, "min")
    curves = cells.point.groupby(level=_other(MCELL, "sigma")).min()
    worst = cells.point.idxmin()
    return outcome(f"lowest, over every (configuration, split) and σ, of the mean PSNR(net, LE-MMSE) over images; "
                   f"holds if > {thr:g} dB (every curve above {thr:g} dB at every σ)", value, lo, hi, value > thr,
                   f"{int((curves > thr).sum())} of {len(curves)} (configuration, split) curves stay above {thr:g} dB "
                   f"at every σ; lowest cell: {_name(worst, MCELL)}", len(cells.point))


@claim("agreement", "The PSNR between neural networks and the analytical formula remains high (> 25 dB) across "
       "all noise levels; similar behaviour is observed for other architectures and datasets.",
       "§4.2, Fig. 5, Table 2")
def agreement(inp: Inputs) -> Outcome:
    return _agreement(inp, "agreement", _net(inp))


@claim("agreement_64", "At 64×64 the trained neural network closely approximates the analytical LE-MMSE "
       "estimator.", "§4.5, Figs. 9 and 27")
def agreement_64(inp: Inputs) -> Outcome:
    m = _net(inp)
    big = [d for d in m["dataset"].unique() if inp.resolutions.get(d, 0) >= 64]
    if not big:
        raise NotCovered("no data set of 64×64 or larger in the sweep (resolutions: "
                         + (", ".join(f"{d}: {r}" for d, r in inp.resolutions.items()) or "unknown") + ")")
    return _agreement(inp, "agreement_64", m[m["dataset"].isin(big)])


@claim("often_30", "PSNR values exceeding 25 dB in most cases and often reaching above 30 dB.", "§D.1, Figs. 10–12")
def often_30(inp: Inputs) -> Outcome:
    s = inp.settings
    cells = _cells(inp, _net(inp), MCELL, ["psnr_net_est"], "often_30")
    value, lo, hi = _boot(inp, cells, lambda x: (x > s.often_db).astype(float), "mean")
    most = float((cells.point > s.agreement_db).mean())
    return outcome(f"share of (configuration, σ, split) cells whose mean PSNR(net, LE-MMSE) is > {s.often_db:g} dB; "
                   f"holds if ≥ {s.often_share:g} (our reading of 'often') and the share > {s.agreement_db:g} dB is "
                   f"> {s.most_share:g} ('most cases')", value, lo, hi,
                   value >= s.often_share and most > s.most_share,
                   f"share > {s.agreement_db:g} dB: {most:.2f}", len(cells.point))


@claim("train_test_gap", "A noticeable train-test gap remains, most pronounced at low noise level.",
       "§4.2, Figs. 2 and 5")
def train_test_gap(inp: Inputs) -> Outcome:
    m = _net(inp)
    if not {"train", "test"} <= set(m["split"]):
        raise NotCovered("needs train and test images")
    cells = _cells(inp, m, MCELL, ["psnr_net_est"], "train_test_gap")

    def per(x: pd.Series) -> pd.Series:
        e = ends(_split_gap(x), "sigma")
        return np.minimum(e["first"], e["first"] - e["last"])

    value, lo, hi = _boot(inp, cells, per, "min")
    e = ends(_split_gap(cells.point), "sigma")
    return outcome("per configuration, the gap g(σ) = mean PSNR(net, LE-MMSE) train − test; statistic: the lowest, "
                   "over configurations, of min(g(σ_min), g(σ_min) − g(σ_max)); holds if > 0 (a positive gap, "
                   "larger at the smallest σ than at the largest)", value, lo, hi, value > 0,
                   f"median gap {e['first'].median():.2f} dB at the smallest σ, {e['last'].median():.2f} dB at the "
                   f"largest ({len(e)} configurations)", len(cells.point))


@claim("density", "The networks and the theoretical formula best align in high-density regions: the alignment "
       "degrades as −log p(y) increases.", "§4.2, Fig. 6")
def density(inp: Inputs) -> Outcome:
    m = _net(inp).dropna(subset=[DENSITY_PATCH]) if DENSITY_PATCH in inp.metrics.columns else None
    if m is None or m.empty:
        raise NotCovered(f"no {DENSITY_PATCH} values (the paper's density convention) in the metrics")
    keys = _other(MCELL, "split")  # within one σ; train and test images pooled (Fig. 6)
    cells = _cells(inp, m, keys, ["psnr_net_est", DENSITY_PATCH], "density", stat=spearman_stat, min_images=3)
    value, lo, hi = _boot(inp, cells, _same, "median")
    extra = ""
    try:
        split = _cells(inp, m, MCELL, ["psnr_net_est", DENSITY_PATCH], "density_split", stat=spearman_stat,
                       min_images=3)
        extra = f"; within one split: median ρ = {split.point.median():.2f}"
    except NotCovered:
        pass
    if DENSITY_IMAGE in m.columns and m[DENSITY_IMAGE].notna().any():
        img = _cells(inp, m, keys, ["psnr_net_est", DENSITY_IMAGE], "density_image", stat=spearman_stat,
                     min_images=3)
        extra += f"; with the image density −log p(y): median ρ = {img.point.median():.2f}"
    return outcome("Spearman ρ between PSNR(net, LE-MMSE) and the paper's patch −log p (mean over pixels of the "
                   "log-sum-exp of the logits, no Gaussian constants) over the images of one (configuration, σ); "
                   "statistic: the median ρ over those cells; holds if < 0", value, lo, hi, value < 0,
                   f"{int((cells.point < 0).sum())} of {int(cells.point.notna().sum())} cells have ρ < 0{extra}",
                   len(cells.point))


# ----------------------------------------------------------------------------------------- patch size
@claim("small_patches_agree", "For low noise levels and in the test set, the PSNR between the network and the "
       "formula decreases as the patch size increases.", "§4.3, §D.3, Fig. 18")
def small_patches_agree(inp: Inputs) -> Outcome:
    m = _net(inp)
    m = m[m["split"] == "test"]
    if m.empty:
        raise NotCovered("no test images")
    cells = _cells(inp, m, MCELL, ["psnr_net_est"], "small_patches_agree")

    def diffs(x: pd.Series) -> pd.Series:
        e = ends(x, "patch")
        if e.empty:
            return pd.Series(dtype=float)
        d = (e["first"] - e["last"]).rename("d")
        return ends(d, "sigma")["first"]  # at each configuration's smallest σ

    value, lo, hi = _boot(inp, cells, diffs, "min")
    d = diffs(cells.point)
    return outcome("per matched configuration at its smallest σ on test images: mean PSNR(net, LE-MMSE) at the "
                   "smallest P minus at the largest P; statistic: the lowest over configurations; holds if > 0",
                   value, lo, hi, value > 0, f"{int((d > 0).sum())} of {len(d)} configurations favour the smaller "
                   "patch", len(cells.point))


@claim("density_vs_patch", "The patch density falls as the patch size grows (−log p of patches increases with P), "
       "for training and test points.", "§4.3, §D.3, Fig. 17")
def density_vs_patch(inp: Inputs) -> Outcome:
    a = _lemmse(inp, DENSITY_PATCH)
    cells = _cells(inp, a, ACELL, [DENSITY_PATCH], "density_vs_patch")

    def per(x: pd.Series) -> pd.Series:
        e = ends(x, "patch")
        return e["last"] - e["first"]

    value, lo, hi = _boot(inp, cells, per, "min")
    e = ends(cells.point, "patch")
    return outcome("per (configuration, σ, split): mean paper-convention patch −log p at the largest P minus at the "
                   "smallest P; statistic: the lowest over cells; holds if > 0 (patches sparser for larger P)",
                   value, lo, hi, value > 0, f"{int((e['last'] > e['first']).sum())} of {len(e)} cells sparser at the "
                   "largest P", len(cells.point))


@claim("patch_vs_sigma", "On the test set, smaller patch sizes are preferable for low noise levels, while larger "
       "patch sizes yield better performance for high noise levels.", "§4.3, §D.3, Fig. 19")
def patch_vs_sigma(inp: Inputs) -> Outcome:
    a = _lemmse(inp, "psnr_est_truth")
    a = a[a["split"] == "test"]
    if a.empty:
        raise NotCovered("no LE-MMSE rows on test images")
    cells = _cells(inp, a, ACELL, ["psnr_est_truth"], "patch_vs_sigma")

    def best(x: pd.Series) -> pd.DataFrame:
        table = x.unstack("patch")
        table = table[table.notna().sum(axis=1) >= 2]
        if table.empty:
            return pd.DataFrame(columns=["first", "last", "first_at", "last_at"])
        return ends(table.idxmax(axis=1).astype(float), "sigma")

    def per(x: pd.Series) -> pd.Series:
        b = best(x)
        return b["last"] - b["first"]

    value, lo, hi = _boot(inp, cells, per, "min")
    b = best(cells.point)
    detail = "; ".join(f"{_name(k, b.index.names)}: best P = {r['first']:g} at σ = {r['first_at']:g}, "
                       f"{r['last']:g} at σ = {r['last_at']:g}" for k, r in b.iterrows())
    return outcome("per (configuration without P, split = test): the P maximising the mean PSNR(LE-MMSE, truth) at "
                   "each σ; statistic: the lowest, over configurations, of best P at the largest σ minus best P at "
                   "the smallest σ; holds if > 0", value, lo, hi, value > 0, detail, len(cells.point))


@claim("train_blowup", "On the training set, for low noise levels the formula copy-pastes exactly the right "
       "patches, explaining the blow-up of PSNR(LE-MMSE, truth) at the origin.", "§D.3, Fig. 19")
def train_blowup(inp: Inputs) -> Outcome:
    """Only where B y shows every pixel at about the noise σ can a training patch be copied exactly:
    inpainting hides the pixels of patches inside the hole (the formula returns their mean there),
    and deconvolution's A⁺ multiplies the noise by up to 1/min|â| (≈ 5·10³ for the Gaussian blur),
    so its smallest σ is no low noise. Those cells are reported in the detail, not in the statistic."""
    thr = inp.settings.blowup_db
    a = _lemmse(inp, "psnr_est_truth")
    if not {"train", "test"} <= set(a["split"]):
        raise NotCovered("needs LE-MMSE rows on train and test images")
    outside = (a["task"] == "inpainting") | _amplified(inp, a)
    if not (~outside).any():
        raise NotCovered("no LE-MMSE rows on a problem whose B y shows every pixel at noise ~σ "
                         "(denoising, or deconvolution with B ≠ A⁺)")
    cells = _cells(inp, a[~outside], ACELL, ["psnr_est_truth"], "train_blowup")

    value, lo, hi = _boot(inp, cells, lambda x: ends(_split_gap(x), "sigma")["first"], "min")
    e = ends(_split_gap(cells.point), "sigma")
    detail = (f"median gap {e['first'].median():.1f} dB at the smallest σ, {e['last'].median():.1f} dB at the "
              f"largest ({len(e)} configurations)")
    if outside.any():
        rest = a[outside]
        gaps = rest[rest["sigma"] == rest.groupby(list(EST_CONFIG), dropna=False)["sigma"].transform("min")]
        per = gaps.groupby(["task", "preinverse", "split"])["psnr_est_truth"].mean().unstack("split")
        if {"train", "test"} <= set(per.columns):
            detail += "; outside the statistic (hidden pixels or A⁺-amplified noise), mean gap at the smallest σ: " + ", ".join(
                f"{t} B={p}: {g:.1f} dB" for (t, p), g in (per["train"] - per["test"]).dropna().items())
    return outcome("per configuration whose B y shows every pixel at noise ~σ (denoising; deconvolution with "
                   "B ≠ A⁺; inpainting's hidden pixels and A⁺'s amplified noise cannot be copied): mean "
                   "PSNR(LE-MMSE, truth) on train minus on test images at the smallest σ; statistic: the lowest "
                   f"over configurations; holds if ≥ {thr:g} dB", value, lo, hi, value >= thr, detail,
                   len(cells.point))


# ------------------------------------------------------------------------------------ mass, patchwork
def _mass(inp: Inputs) -> pd.DataFrame:
    return _lemmse(inp, MASS)


@claim("mass_few", "For low noise levels, the estimator concentrates its mass on fewer patches (even nearest "
       "neighbours).", "§D.4, Fig. 20")
def mass_few(inp: Inputs) -> Outcome:
    thr = inp.settings.few_patches
    a = _mass(inp)
    amplified = _amplified(inp, a)
    if amplified.all():
        raise NotCovered("only deconvolution with B = A⁺, whose smallest σ is no low noise in B y")
    cells = _cells(inp, a[~amplified], ACELL, [MASS], "mass_few")

    value, lo, hi = _boot(inp, cells, lambda x: ends(x, "sigma")["first"], "max")
    detail = f"{len(ends(cells.point, 'sigma'))} configurations"
    if amplified.any():
        rest = a[amplified]
        low = rest[rest["sigma"] == rest["sigma"].min()]
        detail += (f"; deconvolution with B = A⁺ (A⁺-amplified noise, outside the statistic): {low[MASS].mean():.3g} "
                   f"at σ = {rest['sigma'].min():g}")
    return outcome("per (configuration, split) whose smallest σ is low noise in B y (not deconvolution with B = A⁺, "
                   "whose A⁺ amplifies it ~10³-fold): mean over images of the 99 %-mass count averaged over observed "
                   f"pixels, at the smallest σ; statistic: the largest over configurations; holds if ≤ {thr:g}",
                   value, lo, hi, value <= thr, detail, len(cells.point))


@claim("mass_grows", "As the noise level increases, the number of contributing patches increases significantly.",
       "§D.4, Figs. 20–22")
def mass_grows(inp: Inputs) -> Outcome:
    thr = inp.settings.mass_growth
    cells = _cells(inp, _mass(inp), ACELL, [MASS], "mass_grows")

    def per(x: pd.Series) -> pd.Series:
        e = ends(x, "sigma")
        return e["last"] / e["first"]

    value, lo, hi = _boot(inp, cells, per, "min")
    return outcome("per (configuration, split): observed-pixel 99 %-mass count at the largest σ over that at the "
                   f"smallest σ (means over images); statistic: the lowest over configurations; holds if ≥ {thr:g}",
                   value, lo, hi, value >= thr, "", len(cells.point))


def _slopes(x: pd.Series) -> pd.DataFrame:
    """Per group: the steepest step of log10(mass) against log10(σ) between neighbouring σ of the
    grid (``slope``) and the σ that step ends at (``sigma_c``)."""
    table = x.unstack("sigma").sort_index(axis=1)
    logs = np.log10(table.to_numpy(dtype=np.float64))
    logsig = np.log10(table.columns.to_numpy(dtype=np.float64))
    slope = np.diff(logs, axis=1) / np.diff(logsig)[None, :]
    keep = np.isfinite(slope).any(axis=1)
    slope, index = slope[keep], table.index[keep]
    best = np.nanargmax(np.where(np.isfinite(slope), slope, -np.inf), axis=1) if len(slope) else np.zeros(0, int)
    return pd.DataFrame({"slope": slope[np.arange(len(best)), best], "sigma_c": table.columns.to_numpy()[best + 1]},
                        index=index)


@claim("critical_sigma", "There is a critical value of σ where the number of contributing patches starts to "
       "increase rapidly.", "§D.4, Fig. 20")
def critical_sigma(inp: Inputs) -> Outcome:
    thr = inp.settings.critical_slope
    cells = _cells(inp, _mass(inp), ACELL, [MASS], "critical_sigma")
    value, lo, hi = _boot(inp, cells, lambda x: _slopes(x)["slope"], "min")
    sl = _slopes(cells.point)
    return outcome("per (configuration, split): the steepest step of log10(mass) against log10(σ) between "
                   f"neighbouring σ; statistic: the lowest over configurations of that slope; holds if ≥ {thr:g}; "
                   "critical σ = the upper end of that step (the paper's value is lost from its text)",
                   value, lo, hi, value >= thr,
                   "critical σ: " + ", ".join(f"{v:g}" for v in sorted(sl["sigma_c"].unique())), len(cells.point))


@claim("deconvolution_pinv_mass", "For deconvolution the physics-informed setting (B = A⁺) has a significantly "
       "higher number of contributing patches than the physics-agnostic one (B = I), the pseudo-inverse "
       "amplifying the noise.", "§D.4, Fig. 20")
def deconvolution_pinv_mass(inp: Inputs) -> Outcome:
    thr = inp.settings.pinv_mass_ratio
    a = _mass(inp)
    kinds = a["preinverse"].map(inp.kind)
    a = a[(a["task"] == "deconvolution") & kinds.isin(["identity", "pinv"])].assign(kind=kinds)
    if set(a["kind"]) != {"identity", "pinv"}:
        raise NotCovered("needs LE-MMSE mass on deconvolution with both B = I and B = A⁺")
    keys = [k if k != "preinverse" else "kind" for k in ACELL]
    cells = _cells(inp, a, keys, [MASS], "deconvolution_pinv_mass")

    def ratios(x: pd.Series) -> pd.Series:
        r = (x.xs("pinv", level="kind") / x.xs("identity", level="kind")).dropna()
        return r.groupby(level=others(r, "sigma")).median() if len(r) else r

    value, lo, hi = _boot(inp, cells, ratios, "min")
    r = (cells.point.xs("pinv", level="kind") / cells.point.xs("identity", level="kind")).dropna()
    return outcome("per matched (configuration, σ, split): mass with B = A⁺ over mass with B = I (observed-pixel "
                   "99 %-mass, means over images); statistic: the lowest, over configurations, of the median ratio "
                   f"over σ; holds if ≥ {thr:g}", value, lo, hi, value >= thr,
                   "ratio per σ: " + ", ".join(f"σ = {s:g}: {v:.3g}"
                                               for s, v in r.groupby(level="sigma").median().items()),
                   len(cells.point))


@claim("patchwork_dissolves", "As the noise level increases, more pixels are not mostly due to a single patch: "
       "the patchwork effect diminishes.", "§D.5, Figs. 23–24")
def patchwork_dissolves(inp: Inputs) -> Outcome:
    column = next((c for c in PATCHWORK if c in inp.analytic.columns and inp.analytic[c].notna().any()), None)
    if column is None:
        raise NotCovered(f"no patchwork column ({' or '.join(PATCHWORK)}) in the analytic table")
    cells = _cells(inp, _lemmse(inp, column), ACELL, [column], "patchwork_dissolves")

    def per(x: pd.Series) -> pd.Series:
        e = ends(x, "sigma")
        return e["last"] - e["first"]

    value, lo, hi = _boot(inp, cells, per, "max")
    what = ("share of pixels whose source is a single training patch holding ≥ 50 % of the weight"
            if column == "source_share" else "number of distinct training images that are a single-patch source")
    return outcome(f"per (configuration, split): mean {what} ({column}) at the largest σ minus at the smallest σ; "
                   "statistic: the largest over configurations; holds if < 0", value, lo, hi, value < 0, "",
                   len(cells.point))


# -------------------------------------------------------------------------------------------- smoothing
def _smoothing(inp: Inputs, cid: str, value: str, words: str) -> Outcome:
    m = _columns(inp.metrics, [*MCELL, "image", value], "metrics rows")
    m = m[m["eval_dataset"] == m["dataset"]]
    smooth = m[m["estimator"] == "smoothed"]
    s_fixed = inp.settings.smoothing
    if s_fixed is not None:
        smooth = smooth[np.isclose(smooth["smoothing"], s_fixed)]
    if smooth.empty:
        raise NotCovered("no smoothed LE-MMSE rows" + (f" with s = {s_fixed:g}" if s_fixed is not None else ""))
    on = [*_other(MCELL, "estimator", "smoothing"), "image"]
    plain = m[m["estimator"] == "lemmse"][on + [value]]
    j = smooth.merge(plain, on=on, suffixes=("", "_plain"))
    if j.empty:
        raise NotCovered("no plain LE-MMSE rows matching the smoothed ones")
    j = j.assign(delta=j[value] - j[f"{value}_plain"])
    cells = _cells(inp, j, MCELL, ["delta"], cid)

    def per_s(x: pd.Series) -> pd.Series:
        return x.groupby(level=[n for n in ("rep", "smoothing") if n in x.index.names]).median()

    out, lo, hi = _boot(inp, cells, per_s, "min")
    rule = (f"s = {s_fixed:g}, fixed in the settings" if s_fixed is not None
            else "every s of the sweep, each must hold")
    return outcome(f"per matched (configuration, σ, split), paired by image: mean change of {words} from the "
                   f"LE-MMSE to the smoothed LE-MMSE; statistic: the median over cells, lowest over s ({rule}); "
                   "holds if > 0", out, lo, hi, out > 0,
                   "; ".join(f"s = {s:g}: {v:+.2f} dB" for s, v in per_s(cells.point).items()), len(cells.point))


@claim("smoothing_agreement", "The smoothed LE-MMSE better matches the neural network output.", "§4.4, Fig. 8")
def smoothing_agreement(inp: Inputs) -> Outcome:
    return _smoothing(inp, "smoothing_agreement", "psnr_net_est", "PSNR(net, estimator)")


@claim("smoothing_reconstruction", "The smoothed LE-MMSE improves reconstruction quality.", "§4.4, Fig. 8")
def smoothing_reconstruction(inp: Inputs) -> Outcome:
    return _smoothing(inp, "smoothing_reconstruction", "psnr_est_truth", "PSNR(estimator, truth)")


# ------------------------------------------------------------------------------------- memorisation
MEM_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "estimator", "patch", "train_size", "sigma", "split")


def _ratio_of_medians(values: np.ndarray) -> np.ndarray:
    """median(distance) / median(truth's distance) over images: ``(..., n, 2) -> (...)``."""
    return np.median(values[..., 0], axis=-1) / np.maximum(np.median(values[..., 1], axis=-1), 1e-12)


def _memorisation(inp: Inputs, cid: str, estimator: str, memorises: bool) -> Outcome:
    thr = inp.settings.memorised_fraction
    t = _columns(inp.memorisation, [*MEM_KEYS, "image", "distance", "truth_distance"], "memorisation table rows")
    t = t[(t["estimator"] == estimator) & (t["split"] == "test") & (t["eval_dataset"] == t["dataset"])]
    if t.empty:
        raise NotCovered(f"no {estimator} rows on test images in the memorisation table")
    groups = _other(MEM_KEYS, "sigma")
    t = t[t["sigma"] == t.groupby(groups)["sigma"].transform("min")]  # the smallest σ of each configuration
    cells = _cells(inp, t, MEM_KEYS, ["distance", "truth_distance"], cid, stat=_ratio_of_medians)
    value, lo, hi = _boot(inp, cells, _same, "max" if memorises else "min")
    ok = value < thr if memorises else value >= thr
    side = f"the largest over configurations; holds if < {thr:g}" if memorises else \
        f"the smallest over configurations; holds if ≥ {thr:g}"
    return outcome(f"on test images at each configuration's smallest σ: median shift-aware distance of the {estimator} "
                   "output to the training set (min over training images and circular shifts, RMS) over the "
                   f"truth's own; statistic: {side}", value, lo, hi, ok,
                   f"{len(cells.point)} configurations", len(cells.point))


@claim("memorisation_mmse", "The empirical MMSE memorises: it reconstructs by re-weighting training examples and "
       "never extrapolates outside the training set.", "§3.2, Fig. 2")
def memorisation_mmse(inp: Inputs) -> Outcome:
    return _memorisation(inp, "memorisation_mmse", "mmse", True)


@claim("memorisation_emmse", "The E-MMSE estimator memorises the augmented (shifted) data set.", "§3.3, Cor. 3.7, "
       "Fig. 2")
def memorisation_emmse(inp: Inputs) -> Outcome:
    return _memorisation(inp, "memorisation_emmse", "emmse", True)


@claim("lemmse_generalises", "The LE-MMSE gives patchworks of training patches: it produces images outside the "
       "(augmented) training set.", "§3.4, Cor. 3.9, Fig. 2")
def lemmse_generalises(inp: Inputs) -> Outcome:
    return _memorisation(inp, "lemmse_generalises", "lemmse", False)


# --------------------------------------------------------------------------------- E-MMSE, Cor. 3.7
PAIR_KEYS = ("dataset", "eval_dataset", "task", "estimator", "patch", "train_size", "kind_a", "kind_b", "sigma",
             "split")


def _emmse_pairs(inp: Inputs, tasks: Sequence[str]) -> pd.DataFrame:
    if inp.estimator_pairs is not None and inp.estimator_pairs.empty:
        raise NotCovered("the config has no estimator store under two pre-inverses (Cor. 3.7 needs the E-MMSE with "
                         "B = I and B = A⁺, e.g. both in the memorisation problems)")
    t = _columns(inp.estimator_pairs, ["dataset", "eval_dataset", "task", "estimator", "patch", "train_size",
                                       "preinverse_a", "preinverse_b", "sigma", "split", "image", "psnr"],
                 "estimator-pair rows")
    t = t.assign(kind_a=t["preinverse_a"].map(inp.kind), kind_b=t["preinverse_b"].map(inp.kind))
    pair = {frozenset(k) for k in zip(t["kind_a"], t["kind_b"])}
    keep = [frozenset(("identity", "pinv")) == frozenset(k) for k in zip(t["kind_a"], t["kind_b"])]
    t = t[np.asarray(keep, dtype=bool) & (t["estimator"] == "emmse") & t["task"].isin(tasks)]
    if t.empty:
        raise NotCovered(f"no E-MMSE pair B = I vs B = A⁺ on {' or '.join(tasks)} (pairs present: "
                         f"{sorted(tuple(sorted(p)) for p in pair) or 'none'})")
    return t


#: Why the Cor. 3.7 threshold is what it is (said in both statistics).
COINCIDE_REASON = ("identical in exact arithmetic when A is an invertible circular convolution: the Gaussian blur's "
                   "spectrum has no zero (smallest |â|/max |â| ≈ 2·10⁻⁴ ≫ the pseudo-inverse's cut 10⁻⁶), so "
                   "A⁺ = A⁻¹, no frequency is cut and B = A⁺ changes no weight; {thr:g} dB, an RMS difference of 1 % of "
                   "the [0, 1] range, is far above float32 rounding (≈ 140 dB) and far below a visible difference")


@claim("emmse_invertible", "Data augmentation and architecture equivariance are identical if A and B are circular "
       "convolutions with A invertible: physics-agnostic and physics-aware E-MMSE are identical.",
       "§3.3, Cor. 3.7, Fig. 3")
def emmse_invertible(inp: Inputs) -> Outcome:
    thr = inp.settings.coincide_db
    t = _emmse_pairs(inp, ["deconvolution"])
    cells = _cells(inp, t, PAIR_KEYS, ["psnr"], "emmse_invertible", stat=pooled_psnr_stat)
    value, lo, hi = _boot(inp, cells, _same, "min")
    identical = int(np.isinf(cells.point).sum())
    return outcome("PSNR between the E-MMSE with B = I and with B = A⁺ on the same y (deconvolution: an invertible "
                   f"circular blur), per (σ, split) the PSNR of the mean MSE over images; statistic: the lowest cell "
                   f"(∞: bit-identical outputs); holds if ≥ {thr:g} dB — " + COINCIDE_REASON.format(thr=thr),
                   value, lo, hi, value >= thr, f"{identical} of {len(cells.point)} cells bit-identical",
                   len(cells.point))


@claim("emmse_not_invertible", "This is a near equivalence: it only holds if A and B are invertible circular "
       "convolutions (data augmentation is not equivariance otherwise).", "§3.3, Cor. 3.7, Fig. 3")
def emmse_not_invertible(inp: Inputs) -> Outcome:
    thr = inp.settings.coincide_db
    t = _emmse_pairs(inp, ["inpainting"])
    cells = _cells(inp, t, PAIR_KEYS, ["psnr"], "emmse_not_invertible", stat=pooled_psnr_stat)
    value, lo, hi = _boot(inp, cells, _same, "min")
    below = int((cells.point < thr).sum())
    return outcome("PSNR between the E-MMSE with B = I and with B = A⁺ on the same y (inpainting: a mask, not a "
                   "convolution), per (σ, split) the PSNR of the mean MSE over images; statistic: the lowest cell; "
                   f"holds if < {thr:g} dB (the two estimators are not identical: they differ at some σ; at small σ "
                   "both may put all weight on the same unshifted training image and coincide there) — the threshold "
                   "of the invertible case: " + COINCIDE_REASON.format(thr=thr),
                   value, lo, hi, value < thr, f"{below} of {len(cells.point)} cells below {thr:g} dB",
                   len(cells.point))


# ------------------------------------------------------------------------------------- architectures
NETPAIR_KEYS = ("dataset", "eval_dataset", "task", "preinverse", "patch", "train_size", "train_sigma", "arch_a",
                "arch_b", "sigma", "split")


@claim("architectures", "Different architectures consistently yield a similar output.",
       "§4.2, Figs. 1 and 13–16")
def architectures(inp: Inputs) -> Outcome:
    thr = inp.settings.agreement_db
    t = _columns(inp.netpairs, [*NETPAIR_KEYS, "image", "psnr"], "net-vs-net rows")
    t = t[t["eval_dataset"] == t["dataset"]]
    if t.empty:
        raise NotCovered("no in-distribution pair of architectures")
    cells = _cells(inp, t, NETPAIR_KEYS, ["psnr"], "architectures")
    value, lo, hi = _boot(inp, cells, _same, "min")
    per = cells.point.groupby(level=["arch_a", "arch_b"]).median()
    return outcome("PSNR between two architectures' outputs on the same y (same data, task, B, P, N), mean over "
                   f"images per (σ, split); statistic: the lowest cell; holds if > {thr:g} dB (the level the paper "
                   "calls close)", value, lo, hi, value > thr,
                   "median per pair: " + ", ".join(f"{a}–{b}: {v:.1f} dB" for (a, b), v in per.items()),
                   len(cells.point))


# -------------------------------------------------------------------------------------- dataset size
@claim("dataset_size_limited", "The dataset size has limited influence on the alignment between trained neural "
       "networks and the analytical LE-MMSE formula.", "§D.7, Fig. 26")
def dataset_size_limited(inp: Inputs) -> Outcome:
    thr = inp.settings.spread_db
    cells = _cells(inp, _net(inp), MCELL, ["psnr_net_est"], "dataset_size_limited")
    def spread(x: pd.Series) -> pd.Series:
        g = x.groupby(level=others(x, "train_size"))
        return (g.max() - g.min())[g.count() >= 2]

    if spread(cells.point).empty:
        raise NotCovered("no configuration with two or more training-set sizes")
    value, lo, hi = _boot(inp, cells, spread, "max")
    return outcome("per matched (configuration without N, σ, split): spread (max − min over N) of the mean "
                   f"PSNR(net, LE-MMSE); statistic: the largest spread; holds if ≤ {thr:g} dB", value, lo, hi,
                   value <= thr, f"{len(spread(cells.point))} cells", len(cells.point))


@claim("dataset_size_improves", "… with a slight improvement when increasing the dataset size.", "§D.7, Fig. 26")
def dataset_size_improves(inp: Inputs) -> Outcome:
    cells = _cells(inp, _net(inp), MCELL, ["psnr_net_est"], "dataset_size_improves")

    def per(x: pd.Series) -> pd.Series:
        e = ends(x, "train_size")
        return e["last"] - e["first"]

    if ends(cells.point, "train_size").empty:
        raise NotCovered("no configuration with two or more training-set sizes")
    value, lo, hi = _boot(inp, cells, per, "median")
    return outcome("per matched (configuration without N, σ, split): mean PSNR(net, LE-MMSE) at the largest N minus "
                   "at the smallest; statistic: the median over cells; holds if > 0", value, lo, hi, value > 0, "",
                   len(cells.point))


# -------------------------------------------------------------------------------------------- OOD
def _ood_gap(x: pd.Series) -> pd.Series:
    """In-distribution minus OOD mean agreement, per (network configuration, OOD data set, σ, split)."""
    names = list(x.index.names)
    frame = x.rename("v").reset_index()
    ind = frame[frame["eval_dataset"] == frame["dataset"]].drop(columns="eval_dataset")
    ood = frame[frame["eval_dataset"] != frame["dataset"]]
    j = ood.merge(ind, on=others(x, "eval_dataset"), suffixes=("", "_ind"))
    return j.assign(gap=j["v_ind"] - j["v"]).set_index(names)["gap"]


def _ood_cells(inp: Inputs, cid: str) -> Cells:
    m = _columns(inp.metrics, [*MCELL, "psnr_net_est"], "metrics rows")
    m = m[m["estimator"] == "lemmse"].dropna(subset=["psnr_net_est"])
    if not (m["eval_dataset"] != m["dataset"]).any():
        raise NotCovered("no out-of-distribution rows")
    cells = _cells(inp, m, MCELL, ["psnr_net_est"], cid)
    if _ood_gap(cells.point).empty:
        raise NotCovered("no OOD row with its in-distribution partner (same network, σ, split)")
    return cells


@claim("ood_gap_shrinks", "Out of distribution, for small σ the alignment degrades (OOD images lie in low-density "
       "regions); for large σ the outputs are very close.", "§4.2, Fig. 7, §D.6, Fig. 25")
def ood_gap_shrinks(inp: Inputs) -> Outcome:
    cells = _ood_cells(inp, "ood_gap_shrinks")

    def per(x: pd.Series) -> pd.Series:
        e = ends(_ood_gap(x), "sigma")
        return np.minimum(e["first"], e["first"] - e["last"])

    value, lo, hi = _boot(inp, cells, per, "min")
    e = ends(_ood_gap(cells.point), "sigma")
    return outcome("per network and OOD data set: gap = mean PSNR(net, LE-MMSE) in-distribution − OOD, per (σ, "
                   "split); statistic: the lowest, over networks, of min(gap(σ_min), gap(σ_min) − gap(σ_max)); "
                   "holds if > 0", value, lo, hi, value > 0,
                   f"median gap {e['first'].median():.2f} dB at the smallest σ, {e['last'].median():.2f} dB at the "
                   "largest", len(cells.point))


@claim("ood_high_sigma", "For large noise levels the trained network closely matches the LE-MMSE even on OOD data.",
       "§D.6, Fig. 25")
def ood_high_sigma(inp: Inputs) -> Outcome:
    thr = inp.settings.agreement_db
    cells = _ood_cells(inp, "ood_high_sigma")

    def per(x: pd.Series) -> pd.Series:
        ood = x[x.index.get_level_values("eval_dataset") != x.index.get_level_values("dataset")]
        return ends(ood, "sigma")["last"]

    value, lo, hi = _boot(inp, cells, per, "min")
    return outcome("mean OOD PSNR(net, LE-MMSE) at the largest σ, per (network, OOD data set, split); statistic: the "
                   f"lowest; holds if > {thr:g} dB (the paper's number is lost from its text; its headline level)",
                   value, lo, hi, value > thr, "", len(cells.point))


# ------------------------------------------------------------------------------------- pre-inverse
@claim("preinverse_variance", "The physics-aware B = A⁺ lowers the variance for inpainting, while the "
       "physics-agnostic B = I has the lower variance for deconvolution.", "§3.5, Fig. 4")
def preinverse_variance(inp: Inputs) -> Outcome:
    if not inp.variance:
        raise NotCovered("the variance stage (several noise draws per image) is not run")
    from lemmse.store import open_dataset

    s = inp.settings
    per_task: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for task, path in sorted(inp.variance.items()):
        if task not in ("inpainting", "deconvolution"):
            continue
        ds = open_dataset(path)
        labels = [str(p) for p in ds["preinverse"].values]
        kinds = {inp.kind(p): p for p in labels if inp.kind(p) is not None}
        if {"identity", "pinv"} <= set(kinds):
            v = ds["variance"]
            axes = [d for d in v.dims if d not in ("preinverse", "image")]
            per_task[task] = (v.sel(preinverse=kinds["pinv"]).mean(axes).values.astype(np.float64),
                              v.sel(preinverse=kinds["identity"]).mean(axes).values.astype(np.float64))
    if not per_task:
        raise NotCovered("no inpainting or deconvolution variance store with B = I and B = A⁺")

    def score(ratios: dict[str, float]) -> float:
        # log ratio signed so that > 0 means the claim's direction; the weakest task decides
        return min(-np.log10(r) if t == "inpainting" else np.log10(r) for t, r in ratios.items())

    point = {t: p.mean() / i.mean() for t, (p, i) in per_task.items()}
    draws = {}  # one generator per task: a task's replicates do not depend on which other stores exist
    for t, (p, i) in per_task.items():
        idx = np.random.default_rng([s.seed, zlib.crc32(f"preinverse_variance/{t}".encode())]).integers(
            0, len(p), size=(s.reps, len(p)))
        draws[t] = p[idx].mean(axis=1) / i[idx].mean(axis=1)
    boots = [score({t: draws[t][b] for t in draws}) for b in range(s.reps)]
    lo, hi = np.quantile(boots, [(1 - s.level) / 2, 1 - (1 - s.level) / 2])
    value = score(point)
    missing = {"inpainting", "deconvolution"} - set(per_task)
    return outcome("per task: mean per-pixel LE-MMSE variance over noise draws with B = A⁺ over that with B = I "
                   "(bootstrap over images); statistic: the weaker of −log10(ratio) for inpainting and +log10(ratio) "
                   "for deconvolution; holds if > 0", value, lo, hi, value > 0,
                   "; ".join(f"{t}: Var(A⁺)/Var(I) = {r:.3g}" for t, r in point.items())
                   + (f" ({', '.join(sorted(missing))} not run)" if missing else ""), len(point))


# ------------------------------------------------------------------------------------- inference time
@claim("inference_time", "Neural network inference is substantially faster than evaluating the analytical "
       "estimator (for denoising).", "§5.1")
def inference_time(inp: Inputs) -> Outcome:
    thr = inp.settings.speedup
    t = _columns(inp.timings, ["dataset", "eval_dataset", "task", "preinverse", "patch", "train_size", "what",
                               "seconds_per_estimate"], "benchmark timings")
    t = t[t["task"] == "denoising"]
    keys = ["dataset", "eval_dataset", "task", "preinverse", "patch", "train_size"]
    formula = t[t["what"] == "formula"].groupby(keys)["seconds_per_estimate"].median()
    network = t[t["what"] == "network"].groupby(keys)["seconds_per_estimate"].median()
    ratio = (formula / network).dropna()
    if ratio.empty:
        raise NotCovered("no denoising configuration with both a network and a formula benchmark")
    value = float(ratio.min())
    return outcome("per denoising configuration: LE-MMSE seconds per estimate (shard job benchmarks, a job's "
                   "time split among its shards by their own seconds) over network seconds per estimate "
                   "(evaluation benchmarks, model loading included); statistic: the lowest ratio; "
                   f"holds if ≥ {thr:g} (not a statistic over images: no interval)", value, np.nan, np.nan,
                   value >= thr, f"median {1e3 * network.median():.3g} ms (network) vs {formula.median():.3g} s "
                   "(formula) per estimate", len(ratio))
