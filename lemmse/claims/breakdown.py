r"""The agreement claim per configuration: where PSNR(net, LE-MMSE) stays above the threshold.

The agreement claim (§4.2) is one verdict over every configuration; a reader also needs to see
*where* it holds. :func:`agreement_breakdown` gives one row per matched configuration and split
(data set, task, pre-inverse, architecture, P, N, split; networks against the plain LE-MMSE on
their own data set): the mean and the median over images of PSNR(net, LE-MMSE) at every σ, the
lowest of those means, and whether every σ stays above the threshold — over all σ, and over the
σ at or above ``sigma_floor`` (the laptop default's claim: σ ≥ 0.05, where the small networks
are trained long enough; the paper's grid starts at σ = 0.001).
"""
from __future__ import annotations

import pandas as pd

CONFIG = ("dataset", "task", "preinverse", "arch", "patch", "train_size", "split")


def agreement_breakdown(metrics: pd.DataFrame, threshold: float = 25.0, sigma_floor: float = 0.05) -> pd.DataFrame:
    """One row per configuration and split; columns ``mean@σ``/``median@σ`` per σ, ``lowest_mean``,
    ``holds_all_sigma`` and ``holds_from_floor`` (every mean > ``threshold``, for σ ≥ ``sigma_floor``)."""
    m = metrics[(metrics["estimator"] == "lemmse") & (metrics["eval_dataset"] == metrics["dataset"])]
    m = m.dropna(subset=["psnr_net_est"])
    if m.empty:
        return pd.DataFrame(columns=[*CONFIG, "lowest_mean", "holds_all_sigma", "holds_from_floor"])
    stats = m.groupby([*CONFIG, "sigma"])["psnr_net_est"].agg(["mean", "median"]).reset_index()
    wide = stats.pivot_table(index=list(CONFIG), columns="sigma", values=["mean", "median"])
    sigmas = sorted(stats["sigma"].unique())
    out = pd.DataFrame(index=wide.index)
    for s in sigmas:
        out[f"mean@{s:g}"] = wide[("mean", s)]
        out[f"median@{s:g}"] = wide[("median", s)]
    means = wide["mean"]
    out["lowest_mean"] = means.min(axis=1)
    out["holds_all_sigma"] = (means > threshold).all(axis=1)
    floor = [s for s in sigmas if s >= sigma_floor]
    out["holds_from_floor"] = (means[floor] > threshold).all(axis=1) if floor else False
    return out.reset_index()


PROBLEM = ("dataset", "task", "preinverse", "patch", "train_size")


def problem_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem and receptive field (data set, task, pre-inverse, P, N): how many of its
    (architecture, split) curves hold at every σ and at every σ from the floor, and which
    architectures hold on every curve (``archs_all_sigma``, ``archs_from_floor``: sorted names,
    empty when none)."""
    rows = []
    for key, group in table.groupby(list(PROBLEM), sort=True):
        def archs(column: str) -> str:
            held = group.groupby("arch")[column].all()
            return ", ".join(sorted(held[held].index))

        rows.append(dict(zip(PROBLEM, key), curves=len(group), holds_all_sigma=int(group["holds_all_sigma"].sum()),
                         holds_from_floor=int(group["holds_from_floor"].sum()),
                         archs_all_sigma=archs("holds_all_sigma"), archs_from_floor=archs("holds_from_floor")))
    return pd.DataFrame(rows)


def breakdown_markdown(table: pd.DataFrame, threshold: float, sigma_floor: float) -> list[str]:
    """The breakdown as a Markdown section (empty when there is nothing to show)."""
    if table.empty:
        return []
    sigma_cols = [c for c in table.columns if c.startswith("mean@")]
    head = ["data set", "problem", "arch", "P", "N", "split",
            *[f"σ = {c[5:]}: mean / median" for c in sigma_cols], f"> {threshold:g} dB at every σ",
            f"at every σ ≥ {sigma_floor:g}"]
    lines = ["## Agreement per configuration", "",
             f"PSNR(net, LE-MMSE) in dB over the images of each cell (networks on their own data set, "
             f"against the plain LE-MMSE); the agreement claim above is the lowest mean of this table. Per "
             f"problem, P and N, the curves (architecture, split) whose mean stays > {threshold:g} dB:", ""]
    for r in problem_summary(table).to_dict("records"):
        lines.append(f"- {r['dataset']}, {r['task']}, {r['preinverse']}, P = {r['patch']}, N = {r['train_size']}: "
                     f"{r['holds_all_sigma']} of {r['curves']} at "
                     f"every σ (every curve of: {r['archs_all_sigma'] or 'none'}); {r['holds_from_floor']} of "
                     f"{r['curves']} at every σ ≥ {sigma_floor:g} (every curve of: {r['archs_from_floor'] or 'none'})")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    yes = lambda b: "yes" if bool(b) else "**no**"  # noqa: E731
    for r in table.sort_values(list(CONFIG)).to_dict("records"):
        cells = [f"{r[c]:.1f} / {r['median@' + c[5:]]:.1f}" for c in sigma_cols]
        lines.append("| " + " | ".join([str(r["dataset"]), f"{r['task']}, {r['preinverse']}", str(r["arch"]),
                                         str(r["patch"]), str(r["train_size"]), str(r["split"]), *cells,
                                         yes(r["holds_all_sigma"]), yes(r["holds_from_floor"])]) + " |")
    return lines + [""]
