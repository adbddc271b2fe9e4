r"""The paper's claims checked against our numbers: one row per claim, with the statistic, its value
and a verdict — ``holds``, ``does not hold`` or ``not covered by this config``.

:func:`compute_claims` reads only the gathered tables (:mod:`lemmse.tables`) and, for the
pre-inverse variance claim, the variance stores of :mod:`lemmse.figures.variance`;
:func:`write_claims` writes ``claims.md`` (with the configuration it was computed from) and
``claims.csv``. Unless a claim is about another estimator or data set, rows are networks against
the plain LE-MMSE on their own data set (``estimator == "lemmse"``, ``eval_dataset == dataset``).
Thresholds are stated in each row's statistic; a claim that fails on our data is reported as such.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

HOLDS, FAILS, NOT_COVERED = "holds", "does not hold", "not covered by this config"
VERDICTS = (HOLDS, FAILS, NOT_COVERED)
COLUMNS = ("id", "claim", "where", "statistic", "value", "verdict")

#: Agreement level the paper calls high (dB), and the largest spread (dB) still called "agree".
AGREEMENT_DB = 25.0
SPREAD_DB = 3.0
#: An output is "memorised" when its distance to the training set is below this fraction of the truth's.
MEMORISED_FRACTION = 0.25


@dataclass(frozen=True)
class Outcome:
    statistic: str
    value: str
    verdict: str


class NotCovered(Exception):
    """Raised inside a check when the tables lack what the claim needs (the message says what)."""


def _lemmse(metrics: pd.DataFrame) -> pd.DataFrame:
    m = metrics[(metrics["estimator"] == "lemmse") & (metrics["eval_dataset"] == metrics["dataset"])]
    return m.dropna(subset=["psnr_net_est"])


def _need(df: pd.DataFrame, what: str) -> pd.DataFrame:
    if df.empty:
        raise NotCovered(what)
    return df


def _several(df: pd.DataFrame, column: str, what: str) -> list:
    values = sorted(df[column].dropna().unique().tolist())
    if len(values) < 2:
        raise NotCovered(f"needs two or more {what} (has {values})")
    return values


def _verdict(ok: bool) -> str:
    return HOLDS if bool(ok) else FAILS


# -------------------------------------------------------------------------------------------- checks
def claim_agreement(metrics, analytic, variance) -> Outcome:
    m = _need(_lemmse(metrics), "no network-vs-LE-MMSE rows")
    per = m.groupby(["dataset", "task", "preinverse", "arch", "patch", "train_size", "sigma", "split"])["psnr_net_est"].mean()
    share = float((per >= AGREEMENT_DB).mean())
    return Outcome(f"median over configurations × σ × split of the mean PSNR(net, LE-MMSE); holds if ≥ {AGREEMENT_DB:g} dB",
                   f"{per.median():.1f} dB (min {per.min():.1f}, max {per.max():.1f}; {100 * share:.0f} % of "
                   f"{len(per)} cells ≥ {AGREEMENT_DB:g} dB)", _verdict(per.median() >= AGREEMENT_DB))


def claim_train_gap(metrics, analytic, variance) -> Outcome:
    m = _lemmse(metrics)
    if not {"train", "test"} <= set(m["split"]):
        raise NotCovered("needs train and test images")
    sigmas = _several(m, "sigma", "noise levels")
    keys = ["dataset", "task", "preinverse", "arch", "patch", "train_size", "sigma"]
    piv = m.groupby(keys + ["split"])["psnr_net_est"].mean().unstack("split").dropna()
    gap = (piv["train"] - piv["test"]).groupby(level="sigma").mean()
    small, large = gap.loc[sigmas[0]], gap.loc[sigmas[-1]]
    ok = gap.mean() > 0 and small >= large and gap.idxmax() == sigmas[0]
    return Outcome("gap = mean PSNR(net, LE-MMSE) train − test, per σ; holds if the mean gap > 0 and it is largest "
                   "at the smallest σ",
                   f"mean gap {gap.mean():.2f} dB; {small:.2f} dB at σ = {sigmas[0]:g}, {large:.2f} dB at σ = "
                   f"{sigmas[-1]:g}; largest at σ = {gap.idxmax():g}", _verdict(ok))


def claim_density(metrics, analytic, variance) -> Outcome:
    m = _lemmse(metrics).dropna(subset=["neg_log_density_image_paper"])
    _need(m, "no −log p(y) values")
    if len(m) < 3:
        raise NotCovered("needs three or more images with −log p(y)")
    rho = float(m["psnr_net_est"].rank().corr(m["neg_log_density_image_paper"].rank()))
    per_sigma = [g["psnr_net_est"].rank().corr(g["neg_log_density_image_paper"].rank()) for _, g in m.groupby("sigma") if len(g) > 2]
    within = float(pd.Series(per_sigma, dtype=float).mean())
    return Outcome("Spearman ρ between PSNR(net, LE-MMSE) and −log p(y) over all images and σ; holds if ρ < 0",
                   f"ρ = {rho:.2f} (mean within one σ: {within:.2f}; {len(m)} images)", _verdict(rho < 0))


def _patch_effect(df: pd.DataFrame, value: str, group: list[str]) -> pd.Series:
    piv = df.groupby(group + ["patch"])[value].mean().unstack("patch")
    return piv


def claim_small_patch_agree(metrics, analytic, variance) -> Outcome:
    m = _lemmse(metrics)
    patches = _several(m, "patch", "patch sizes")
    piv = _patch_effect(m, "psnr_net_est", ["dataset", "task", "preinverse", "arch", "train_size", "sigma", "split"])
    diff = (piv[patches[0]] - piv[patches[-1]]).dropna()
    _need(diff, "no configuration with both the smallest and the largest patch")
    return Outcome(f"mean over matched cells of PSNR(net, LE-MMSE) at P = {patches[0]} minus at P = {patches[-1]}; "
                   "holds if > 0",
                   f"{diff.mean():+.2f} dB ({100 * float((diff > 0).mean()):.0f} % of {len(diff)} cells favour the "
                   "smaller patch)", _verdict(diff.mean() > 0))


def claim_patch_vs_sigma(metrics, analytic, variance) -> Outcome:
    a = analytic[(analytic["estimator"] == "lemmse") & (analytic["eval_dataset"] == analytic["dataset"])
                 & (analytic["split"] == "test")].dropna(subset=["psnr_est_truth"])
    _need(a, "no analytic LE-MMSE rows on test images")
    _several(a, "patch", "patch sizes")
    sigmas = _several(a, "sigma", "noise levels")
    mean = a.groupby(["sigma", "patch"])["psnr_est_truth"].mean().unstack("patch")
    best_small, best_large = int(mean.loc[sigmas[0]].idxmax()), int(mean.loc[sigmas[-1]].idxmax())
    return Outcome("P maximising the mean PSNR(LE-MMSE, truth) on test images, at the smallest and the largest σ; "
                   "holds if the best P at the smallest σ is smaller than at the largest",
                   f"best P = {best_small} at σ = {sigmas[0]:g}, P = {best_large} at σ = {sigmas[-1]:g}",
                   _verdict(best_small < best_large))


def claim_preinverse_variance(metrics, analytic, variance) -> Outcome:
    if not variance:
        raise NotCovered("the variance stage (several noise draws per image) is not run")
    from lemmse.store import open_dataset

    ratios, parts = {}, []
    for task, path in variance.items():
        ds = open_dataset(path)
        pres = [str(p) for p in ds["preinverse"].values]
        if {"identity", "pinv"} <= set(pres):
            ratios[task] = float(ds["variance"].sel(preinverse="pinv").mean()) / float(
                ds["variance"].sel(preinverse="identity").mean())
            parts.append(f"{task}: Var(A⁺)/Var(I) = {ratios[task]:.3g}")
    if not {"inpainting", "deconvolution"} & set(ratios):
        raise NotCovered("no inpainting or deconvolution variance store with B = I and B = A⁺")
    ok = all((r < 1) if t == "inpainting" else (r > 1) for t, r in ratios.items() if t in ("inpainting", "deconvolution"))
    missing = {"inpainting", "deconvolution"} - set(ratios)
    note = f" ({', '.join(sorted(missing))} not run)" if missing else ""
    return Outcome("ratio of the mean per-pixel LE-MMSE variance over noise draws, B = A⁺ over B = I; holds if < 1 for "
                   "inpainting and > 1 for deconvolution", "; ".join(parts) + note, _verdict(ok))


def claim_mass(metrics, analytic, variance) -> Outcome:
    a = analytic[analytic["estimator"] == "lemmse"].dropna(subset=["mass99_observed_mean"])
    _need(a, "no mass99_observed_mean values")
    sigmas = _several(a, "sigma", "noise levels")
    mean = a.groupby("sigma")["mass99_observed_mean"].mean()
    small, large = mean.loc[sigmas[0]], mean.loc[sigmas[-1]]
    return Outcome("mean number of patches holding 99 % of the weight, at the smallest and largest σ; holds if ≤ 10 "
                   "at the smallest σ and growing with σ",
                   f"{small:.3g} at σ = {sigmas[0]:g}, {large:.3g} at σ = {sigmas[-1]:g}",
                   _verdict(small <= 10 and large > small))


def claim_smoothing(metrics, analytic, variance) -> Outcome:
    m = metrics[metrics["eval_dataset"] == metrics["dataset"]]
    s = m[m["estimator"] == "smoothed"]
    _need(s, "no smoothed LE-MMSE rows")
    keys = ["dataset", "task", "preinverse", "arch", "patch", "train_size", "sigma", "split", "image"]
    base = m[m["estimator"] == "lemmse"][keys + ["psnr_net_est", "psnr_est_truth"]]
    joined = s.merge(base, on=keys, suffixes=("", "_plain"))
    _need(joined, "no LE-MMSE rows matching the smoothed ones")
    per_s = (joined["psnr_net_est"] - joined["psnr_net_est_plain"]).groupby(joined["smoothing"]).mean()
    truth = (joined["psnr_est_truth"] - joined["psnr_est_truth_plain"]).groupby(joined["smoothing"]).mean()
    best = per_s.idxmax()
    return Outcome("mean change of PSNR(net, estimator) from the LE-MMSE to the smoothed LE-MMSE (best s); holds if > 0",
                   f"{per_s.loc[best]:+.2f} dB at s = {best:g} (PSNR to truth {truth.loc[best]:+.2f} dB); all s: "
                   + ", ".join(f"s = {k:g}: {v:+.2f}" for k, v in per_s.items()), _verdict(per_s.loc[best] > 0))


def claim_memorisation(metrics, analytic, variance) -> Outcome:
    a = analytic[(analytic["eval_dataset"] == analytic["dataset"]) & (analytic["split"] == "test")]
    a = a.dropna(subset=["nearest_train_distance", "truth_nearest_train_distance"])
    have = set(a["estimator"])
    if not {"mmse", "lemmse"} <= have:
        raise NotCovered(f"needs analytic MMSE and LE-MMSE rows on test images (has {sorted(have)})")
    sigma = min(a["sigma"])
    low = a[a["sigma"] == sigma]
    ref = low.groupby("estimator")["truth_nearest_train_distance"].median()
    d = low.groupby("estimator")["nearest_train_distance"].median()
    frac = {e: d[e] / max(ref[e], 1e-12) for e in d.index}
    ok = frac["mmse"] < MEMORISED_FRACTION and frac["lemmse"] >= MEMORISED_FRACTION
    parts = [f"{e}: {d[e]:.3g} ({frac[e]:.2f}×)" for e in ("mmse", "emmse", "lemmse") if e in d.index]
    return Outcome(f"median RMS distance to the nearest training image on test images at σ = {sigma:g}, as a fraction "
                   f"of the truth's own distance; holds if MMSE < {MEMORISED_FRACTION:g}× and LE-MMSE ≥ "
                   f"{MEMORISED_FRACTION:g}× (E-MMSE shown; its distance ignores shifts)", "; ".join(parts),
                   _verdict(ok))


def claim_architectures(metrics, analytic, variance) -> Outcome:
    m = _lemmse(metrics)
    _several(m, "arch", "architectures")
    per = m.groupby(["dataset", "task", "preinverse", "patch", "train_size", "sigma", "split", "arch"])["psnr_net_est"].mean()
    spread = per.groupby(level=list(range(7))).agg(lambda v: v.max() - v.min() if len(v) > 1 else np.nan).dropna()
    _need(spread, "no configuration with two architectures")
    worst = per.groupby(level=list(range(7))).min()
    ok = spread.max() <= SPREAD_DB and worst.median() >= AGREEMENT_DB
    return Outcome(f"proxy (the tables hold no net-vs-net PSNR): spread across architectures of the mean PSNR(net, "
                   f"LE-MMSE) per configuration × σ × split; holds if every spread ≤ {SPREAD_DB:g} dB and the worst "
                   f"architecture's median is ≥ {AGREEMENT_DB:g} dB",
                   f"max spread {spread.max():.2f} dB (median {spread.median():.2f}); worst-architecture median "
                   f"{worst.median():.1f} dB", _verdict(ok))


def claim_dataset_size(metrics, analytic, variance) -> Outcome:
    m = _lemmse(metrics)
    sizes = _several(m, "train_size", "training-set sizes")
    per = m.groupby(["dataset", "task", "preinverse", "arch", "patch", "sigma", "split", "train_size"])["psnr_net_est"].mean()
    spread = per.groupby(level=list(range(7))).agg(lambda v: v.max() - v.min() if len(v) > 1 else np.nan).dropna()
    _need(spread, "no configuration with two training-set sizes")
    by_n = m.groupby("train_size")["psnr_net_est"].mean()
    ok = spread.max() <= SPREAD_DB and by_n.min() >= AGREEMENT_DB
    return Outcome(f"spread across N ∈ {{{', '.join(map(str, sizes))}}} of the mean PSNR(net, LE-MMSE) per configuration "
                   f"× σ × split; holds if every spread ≤ {SPREAD_DB:g} dB and every N's mean ≥ {AGREEMENT_DB:g} dB",
                   f"max spread {spread.max():.2f} dB; mean per N: " + ", ".join(f"N = {k}: {v:.1f}" for k, v in by_n.items()),
                   _verdict(ok))


def claim_ood(metrics, analytic, variance) -> Outcome:
    m = metrics[metrics["estimator"] == "lemmse"].dropna(subset=["psnr_net_est"])
    ood = m[m["eval_dataset"] != m["dataset"]]
    _need(ood, "no out-of-distribution rows")
    keys = ["dataset", "task", "preinverse", "arch", "patch", "train_size", "sigma"]
    ind = m[(m["eval_dataset"] == m["dataset"]) & (m["split"] == "test")].groupby(keys)["psnr_net_est"].mean()
    out = ood[ood["split"] == "test"] if (ood["split"] == "test").any() else ood
    out = out.groupby(keys)["psnr_net_est"].mean()
    gap = (ind - out).dropna().groupby(level="sigma").mean()
    if len(gap) < 2:
        raise NotCovered("needs in- and out-of-distribution rows at two or more σ")
    s0, s1 = gap.index.min(), gap.index.max()
    ood_mean = out.groupby(level="sigma").mean()
    ok = gap.loc[s0] > gap.loc[s1] and ood_mean.loc[s1] >= AGREEMENT_DB
    return Outcome("mean PSNR(net, LE-MMSE) in-distribution minus OOD (test images), at the smallest and largest σ; holds "
                   f"if the gap shrinks with σ and OOD agreement at the largest σ is ≥ {AGREEMENT_DB:g} dB",
                   f"gap {gap.loc[s0]:.2f} dB at σ = {s0:g}, {gap.loc[s1]:.2f} dB at σ = {s1:g}; OOD agreement "
                   f"{ood_mean.loc[s0]:.1f} → {ood_mean.loc[s1]:.1f} dB", _verdict(ok))


CheckFn = Callable[[pd.DataFrame, pd.DataFrame, Mapping[str, Path]], Outcome]

#: (id, claim, where in the paper, check)
CLAIMS: tuple[tuple[str, str, str, CheckFn], ...] = (
    ("agreement", "Trained networks and the LE-MMSE agree at ≳ 25 dB across tasks, data sets and architectures.",
     "§4.2, Fig. 5, Table 2, §D.1", claim_agreement),
    ("train_test_gap", "Agreement is better on training images than on test images, the gap largest at small σ.",
     "§4.2 (low-density regions), Fig. 5", claim_train_gap),
    ("density", "Agreement falls as −log p(y) rises (low-density measurements).", "§4.2, Fig. 6", claim_density),
    ("small_patches_agree", "Smaller patches (receptive fields) agree better with the network.",
     "§4.3, Fig. 18", claim_small_patch_agree),
    ("patch_vs_sigma", "On test images small P reconstructs best at small σ and large P at large σ.",
     "§4.3, Fig. 19", claim_patch_vs_sigma),
    ("preinverse_variance", "B = A⁺ lowers the estimator's noise variance for inpainting and raises it for deconvolution.",
     "§3.5, Fig. 4", claim_preinverse_variance),
    ("mass_concentration", "At small σ the LE-MMSE weight concentrates on a few patches; more contribute as σ grows.",
     "§D.4, Fig. 20–22", claim_mass),
    ("smoothing", "The smoothed LE-MMSE matches the network better than the LE-MMSE.", "§4.4, Fig. 8", claim_smoothing),
    ("memorisation", "MMSE and E-MMSE memorise training images while the LE-MMSE makes images outside the training set.",
     "§3.2–3.4, Fig. 2", claim_memorisation),
    ("architectures", "Different architectures give consistently similar outputs.", "§4.2, Fig. 13–16, Table 2",
     claim_architectures),
    ("dataset_size", "Agreement holds across training-set sizes, with small variations.", "§4.3, Fig. 26",
     claim_dataset_size),
    ("ood", "Out of distribution the agreement degrades at small σ but is close at large σ.", "§4.2, Fig. 7, §D.6, Fig. 25",
     claim_ood),
)


def compute_claims(metrics: pd.DataFrame, analytic: pd.DataFrame, *,
                   variance: Mapping[str, str | os.PathLike] | None = None) -> pd.DataFrame:
    """One row per claim: id, claim, where, statistic, value, verdict (``VERDICTS``).

    ``variance`` maps a task to its variance store (fig4 stage); empty or ``None``: not run.
    """
    variance = {t: Path(p) for t, p in (variance or {}).items()}
    rows = []
    for cid, text, where, check in CLAIMS:
        try:
            out = check(metrics, analytic, variance)
        except NotCovered as why:
            out = Outcome(check.__doc__ or "—", f"— ({why})", NOT_COVERED)
        rows.append(dict(id=cid, claim=text, where=where, statistic=out.statistic, value=out.value, verdict=out.verdict))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _config_block(config: Mapping[str, Any] | None) -> list[str]:
    if not config:
        return []
    import yaml

    return ["<details><summary>Configuration</summary>", "", "```yaml",
            yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True).rstrip(), "```", "", "</details>", ""]


def write_claims(claims: pd.DataFrame, out_md: str | os.PathLike, out_csv: str | os.PathLike, *, config_label: str,
                 config: Mapping[str, Any] | None = None) -> None:
    """Write the claims table as Markdown (stating the configuration) and CSV."""
    out_md, out_csv = Path(out_md), Path(out_csv)
    for p in (out_md, out_csv):
        p.parent.mkdir(parents=True, exist_ok=True)
    claims.assign(config=config_label).to_csv(out_csv, index=False)
    counts = claims["verdict"].value_counts()
    lines = ["# The paper's claims on our numbers", "",
             f"Computed from the configuration **{config_label}** (arXiv 2601.10334). "
             + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".", "",
             *_config_block(config),
             "| claim | where | statistic | value | verdict |", "|---|---|---|---|---|"]
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    for r in claims.itertuples(index=False):
        lines.append(f"| {esc(r.claim)} | {esc(r.where)} | {esc(r.statistic)} | {esc(r.value)} | **{r.verdict}** |")
    out_md.write_text("\n".join(lines) + "\n")


__all__ = ["CLAIMS", "VERDICTS", "HOLDS", "FAILS", "NOT_COVERED", "compute_claims", "write_claims"]
