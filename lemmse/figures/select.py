r"""The selection layer: for each figure, the tidy frame it plots (pandas only, no matplotlib).

Every figure is ``select`` (here) then ``draw`` (:mod:`lemmse.figures.curves`,
:mod:`lemmse.figures.images`). A selection function takes the tables (:class:`FigureInputs`) and the
:class:`Reference` and returns a :class:`Selection`:

* ``frame`` — the tidy frame the figure plots: one row per plotted point (curves: the mean, standard
  deviation and count over images of one quantity at one x) or per image panel (image figures: the
  keys of the store slice to show);
* ``facets`` — the columns whose combinations are the figure's panels or panel rows; the figure draws
  **every** combination the frame holds;
* ``series`` — the columns that tell curves (or panel columns) of one facet apart;
* ``fixed`` — the axes the figure holds at one value, and that value (from the :class:`Reference`);
* ``stores`` — the stores the drawing reads (``("analytic", dataset, eval_dataset, task, preinverse,
  estimator kind, patch, train_size)``, ``("network", dataset, eval_dataset, task, preinverse, arch,
  patch, train_size)``, ``("measurements", dataset, task)``, ``("data", dataset)``); empty for figures
  drawn from the tables alone. The workflow makes a figure's rule depend on these and nothing else.

A figure the tables cannot cover raises :class:`~lemmse.errors.LemmseInputError` naming what is
missing. Only key columns decide coverage and facets, so the *planned* tables of a config (values
NaN, :func:`lemmse.gather.planned_tables`) give the same facets as the gathered ones.

Where a figure fixes an axis (P, N), the value is the configured reference (``figures.reference``:
by default the ``noise`` study's own first P and N), never an extreme of the axis; without a
configured value the axis must hold a single value, else the error names the key to set.
Means are over images (and pixels where the column is a per-image mean already); ``std`` is the
standard deviation over images (ddof 1, NaN for one image).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from lemmse.errors import LemmseInputError
from lemmse.figures.inputs import ARCH_ORDER, FigureInputs, fix, in_distribution, ordered, problems, require
from lemmse.plan.specs import BUILTIN_ESTIMATORS

#: The density and mass columns the figures plot (the paper's conventions; MATH.md "Diagnostics").
DENSITY_IMAGE = "neg_log_density_image_paper"
DENSITY_PATCH = "neg_log_density_patch_paper"
MASS_STATISTICS = ("mass99_observed_mean", "mass99_observed_median")
#: The three PSNRs of Fig. 5, in the paper's order (agreement first).
FIG5_QUANTITIES = ("psnr_net_est", "psnr_net_truth", "psnr_est_truth")
MEMO_ESTIMATORS = BUILTIN_ESTIMATORS  # the memorisation stage's stores (lemmse.plan.specs)


@dataclass(frozen=True)
class Reference:
    """The slice a figure fixes on an axis it is not about (``figures.reference`` of the config).

    ``patch`` and ``train_size``: the reference P and N (``None``: the axis must hold one value);
    ``memorisation_patch``/``memorisation_train_size``: the LE-MMSE patch and N of Fig. 2 (the
    ``memorisation`` section); ``source``: where the values came from (said in titles and errors);
    ``dataset``: the reference training data set (Fig. 1 and 23; Fig. 24 draws the others; ``None``:
    the tables must hold one).
    """

    patch: int | None = None
    train_size: int | None = None
    memorisation_patch: int | None = None
    memorisation_train_size: int | None = None
    source: str = "figures.reference"
    dataset: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "Reference":
        """The reference of a (validated or raw) workflow config: ``figures.reference.patch`` /
        ``train_size`` / ``dataset`` when set, else the first patch size, training size and data set of the study
        ``figures.reference.study`` (default ``noise``) when the config has it."""
        if not config:
            return cls(source="no configuration")
        ref = dict((config.get("figures") or {}).get("reference") or {})
        name = ref.get("study", "noise")
        study = (config.get("studies") or {}).get(name)
        patch, train_size, dataset = ref.get("patch"), ref.get("train_size"), ref.get("dataset")
        source = "figures.reference"
        if study is not None:
            if dataset is None and study.get("datasets"):
                dataset = str(study["datasets"][0])
            if patch is None and study.get("patches", [5]):
                patch = int(study.get("patches", [5])[0])
                source = f"study {name!r}"
            if train_size is None and study.get("train_sizes"):
                train_size = int(study["train_sizes"][0])
                source = f"study {name!r}"
        mem = config.get("memorisation") or {}
        return cls(patch=None if patch is None else int(patch), train_size=None if train_size is None else int(train_size),
                   memorisation_patch=mem.get("patch"), memorisation_train_size=mem.get("train_size"), source=source,
                   dataset=dataset)


@dataclass
class Selection:
    """What one figure plots: see the module doc."""

    name: str
    frame: pd.DataFrame
    facets: tuple[str, ...]
    series: tuple[str, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    stores: list[tuple] = field(default_factory=list)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    def facet_values(self, frame: pd.DataFrame | None = None) -> list[tuple]:
        """The distinct facet combinations of the frame, in the frame's (paper) order."""
        frame = self.frame if frame is None else frame
        return list(dict.fromkeys(frame[list(self.facets)].itertuples(index=False, name=None)))


# -- helpers --------------------------------------------------------------------------------------------
def fix_axis(df: pd.DataFrame, column: str, value: int | None, figure: str, key: str) -> tuple[pd.DataFrame, int]:
    """Rows of ``df`` at the reference ``value`` of ``column``; with no reference, the one value it holds."""
    values = sorted(df[column].dropna().unique().tolist())
    if value is None:
        if len(values) != 1:
            raise LemmseInputError(f"{figure}: the tables hold {column} = {values} and no reference {column} is "
                                   f"configured; set {key} (or define the reference study)")
        value = values[0]
    out = df[df[column] == value]
    if out.empty:
        raise LemmseInputError(f"{figure}: no rows at the reference {column} = {value} ({key}); the tables hold "
                               f"{column} = {values}")
    return out, int(value)


def lemmse_metrics(inputs: FigureInputs, figure: str) -> pd.DataFrame:
    """In-distribution metrics rows of a network against the plain LE-MMSE."""
    return require(in_distribution(fix(inputs.metrics, estimator="lemmse")),
                   "metrics rows of a network against the LE-MMSE on its own data set", figure)


def lemmse_analytic(inputs: FigureInputs, figure: str) -> pd.DataFrame:
    """In-distribution analytic rows of the plain LE-MMSE."""
    return require(in_distribution(fix(inputs.analytic, estimator="lemmse")), "analytic LE-MMSE rows", figure)


def problem_order(df: pd.DataFrame) -> pd.Series:
    """A sort key putting (task, pre-inverse) in the paper's order (see :func:`problems`)."""
    rank = {p: i for i, p in enumerate(problems(df))}
    return pd.Series([rank[(t, p)] for t, p in zip(df["task"], df["preinverse"])], index=df.index)


def sort_frame(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``columns`` with datasets in first-seen order, archs and problems in paper order."""
    df = df.copy()
    keys = []
    for c in columns:
        if c in ("task", "preinverse"):
            if "_problem" not in df:
                df["_problem"] = problem_order(df)
                keys.append("_problem")
        elif c == "arch":
            df["_arch"] = df["arch"].map({a: i for i, a in enumerate(ordered(df["arch"], ARCH_ORDER))})
            keys.append("_arch")
        elif c in ("dataset", "eval_dataset", "ood_dataset"):  # the config's order (first seen), not alphabetical
            df[f"_{c}"] = df[c].map({v: i for i, v in enumerate(dict.fromkeys(df[c]))})
            keys.append(f"_{c}")
        elif c == "split":
            df["_split"] = df["split"].map({"train": 0, "test": 1}).fillna(2)
            keys.append("_split")
        else:
            keys.append(c)
    return df.sort_values(keys, kind="stable").drop(columns=[k for k in keys if k.startswith("_")]).reset_index(drop=True)


def stats(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, std and count of ``value`` over the rows of each group (NaN values dropped, groups kept).

    Planned tables (values all NaN) keep their groups with count 0, so coverage and facets do not
    depend on values."""
    grouped = df.groupby(by, sort=False, dropna=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out


def long_stats(df: pd.DataFrame, by: list[str], quantities: tuple[str, ...], name: str = "quantity") -> pd.DataFrame:
    """:func:`stats` of several value columns stacked, with a ``quantity`` column naming each."""
    return pd.concat([stats(df, by, q).assign(**{name: q}) for q in quantities], ignore_index=True)


def pick_sigmas(sigmas, count: int) -> list[float]:
    """``count`` σ spread evenly (by rank) over the sorted distinct values (all when fewer)."""
    sig = sorted(set(float(s) for s in sigmas))
    if len(sig) <= count:
        return sig
    return [sig[i] for i in np.unique(np.round(np.linspace(0, len(sig) - 1, count)).astype(int))]


def first_image(df: pd.DataFrame) -> int:
    return int(sorted(df["image"].unique())[0])


def varying(df: pd.DataFrame, facets: list[str], column: str) -> pd.DataFrame:
    """Rows of the facet combinations along which ``column`` takes at least two values."""
    counts = df.groupby(facets, sort=False)[column].nunique().reset_index(name="_values")
    return df.merge(counts[counts["_values"] >= 2][facets], on=facets)


# -- curves from the tables ------------------------------------------------------------------------------
def select_fig5(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 5 (and the paper's 10–12): the three PSNRs against σ; one row of panels per data set ×
    architecture, one panel per problem; train and test curves; at the reference P and N. Networks
    trained at one fixed σ (a study's ``train_sigmas``) of a row's data set, architecture and problem
    are ``extra["fixed_sigma"]``: their PSNR(net, LE-MMSE) and PSNR(net, truth) at their own σ."""
    name = "fig5_psnr_vs_sigma"
    m, patch = fix_axis(lemmse_metrics(inputs, name), "patch", ref.patch, name, "figures.reference.patch")
    m, n = fix_axis(m, "train_size", ref.train_size, name, "figures.reference.train_size")
    by = ["dataset", "arch", "task", "preinverse", "split", "sigma"]
    frame = sort_frame(long_stats(m, by, FIG5_QUANTITIES), ["dataset", "arch", "task", "quantity", "split", "sigma"])
    extra = {}
    fixed = inputs.fixed_sigma
    if fixed is not None and len(fixed):  # networks trained at one σ, beside the σ-conditioned one of their row
        fixed = in_distribution(fix(fixed, estimator="lemmse", patch=patch, train_size=n))
        keys = frame[["dataset", "arch", "task", "preinverse"]].drop_duplicates()
        fixed = fixed.merge(keys, on=list(keys.columns))
        if len(fixed):
            extra["fixed_sigma"] = sort_frame(long_stats(fixed, [*by, "train_sigma"], ("psnr_net_est", "psnr_net_truth")),
                                              ["dataset", "arch", "task", "quantity", "split", "sigma"])
    return Selection(name, frame, ("dataset", "arch", "task", "preinverse"), ("quantity", "split"),
                     {"patch": patch, "train_size": n}, extra=extra)


def select_fig9(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 9/27 (the paper's 64×64 validation): the Fig. 5 curves for every data set the reference
    slice does not hold (no row at the reference P and N), each at the P and N it has; one row of
    panels per data set × architecture × P × N, one panel per problem."""
    name = "fig9_other_datasets"
    m = lemmse_metrics(inputs, name)
    if ref.patch is None or ref.train_size is None:
        raise LemmseInputError(f"{name}: needs the reference P and N (figures.reference) to tell which data sets "
                               "lie outside the reference slice")
    at_ref = set(m[(m["patch"] == ref.patch) & (m["train_size"] == ref.train_size)]["dataset"])
    rest = m[~m["dataset"].isin(at_ref)]
    if rest.empty:
        raise LemmseInputError(f"{name}: every data set of the tables has rows at the reference slice P = {ref.patch}, "
                               f"N = {ref.train_size} (Fig. 5 draws them); no other data set (e.g. a 64×64 study)")
    by = ["dataset", "arch", "patch", "train_size", "task", "preinverse", "split", "sigma"]
    frame = sort_frame(long_stats(rest, by, FIG5_QUANTITIES),
                       ["dataset", "arch", "patch", "train_size", "task", "quantity", "split", "sigma"])
    return Selection(name, frame, ("dataset", "arch", "patch", "train_size", "task", "preinverse"), ("quantity", "split"))


def select_table2(inputs: FigureInputs, ref: Reference) -> Selection:
    """Table 2: mean PSNR(net, LE-MMSE) over σ and images per architecture × data set × problem × split."""
    name = "table2_architectures"
    m, patch = fix_axis(lemmse_metrics(inputs, name), "patch", ref.patch, name, "figures.reference.patch")
    m, n = fix_axis(m, "train_size", ref.train_size, name, "figures.reference.train_size")
    frame = stats(m, ["arch", "dataset", "task", "preinverse", "split"], "psnr_net_est")
    frame = sort_frame(frame.rename(columns={"mean": "psnr_net_est_mean", "std": "psnr_net_est_std", "count": "n"}),
                       ["split", "arch", "dataset", "task"])
    return Selection(name, frame, ("split",), ("arch", "dataset", "task", "preinverse"), {"patch": patch, "train_size": n})


def select_fig6(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 6: PSNR(net, LE-MMSE) of each image against −log p(y) (paper convention), per data set ×
    architecture (rows) and problem (panels), at the reference P and N."""
    name = "fig6_alignment_vs_density"
    m, patch = fix_axis(lemmse_metrics(inputs, name), "patch", ref.patch, name, "figures.reference.patch")
    m, n = fix_axis(m, "train_size", ref.train_size, name, "figures.reference.train_size")
    planned = m[[DENSITY_IMAGE, "psnr_net_est"]].isna().all().all()
    if not planned:
        m = require(m.dropna(subset=[DENSITY_IMAGE, "psnr_net_est"]),
                    f"finite −log p(y) values ({DENSITY_IMAGE}) at P = {patch}, N = {n}", name)
    cols = ["dataset", "arch", "task", "preinverse", "split", "sigma", "image", DENSITY_IMAGE, "psnr_net_est"]
    frame = sort_frame(m[cols], ["dataset", "arch", "task", "split", "sigma", "image"])
    return Selection(name, frame, ("dataset", "arch", "task", "preinverse"), ("split",), {"patch": patch, "train_size": n})


def _ood_pairs(inputs: FigureInputs, name: str) -> pd.DataFrame:
    m = fix(inputs.metrics, estimator="lemmse")
    return require(m[m["eval_dataset"] != m["dataset"]],
                   "out-of-distribution rows (networks evaluated on another data set's measurements, eval_dataset "
                   "different from dataset; a study with eval_datasets)", name)


def select_fig25(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 25 (curves of the OOD study): agreement and reconstruction PSNRs against σ on another data
    set's test images, beside the in-distribution test images of the same networks; one panel per
    (trained on → evaluated on) × architecture × P × N × problem the sweep holds."""
    name = "fig25_ood_psnr"
    ood = _ood_pairs(inputs, name)
    m = fix(inputs.metrics, estimator="lemmse")
    keys = ["dataset", "arch", "patch", "train_size", "task", "preinverse"]
    combos = ood[keys].drop_duplicates()
    base = in_distribution(m).merge(combos, on=keys)
    rows = pd.concat([ood.merge(combos, on=keys), base], ignore_index=True)
    rows = rows[rows["split"] == "test"] if (rows["split"] == "test").any() else rows
    frame = long_stats(rows, [*keys, "eval_dataset", "sigma"], FIG5_QUANTITIES)
    frame["in_distribution"] = frame["eval_dataset"] == frame["dataset"]
    pairs = ood[["dataset", "eval_dataset"]].drop_duplicates()
    frame = frame.merge(pairs.rename(columns={"eval_dataset": "ood_dataset"}), on="dataset")
    frame = frame[frame["in_distribution"] | (frame["eval_dataset"] == frame["ood_dataset"])]
    frame = sort_frame(frame, ["dataset", "ood_dataset", "arch", "patch", "train_size", "task", "quantity",
                               "in_distribution", "sigma"])
    return Selection(name, frame, ("dataset", "ood_dataset", "arch", "patch", "train_size", "task", "preinverse"),
                     ("quantity", "eval_dataset"))


def select_fig8(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 8: smoothed LE-MMSE (each s) against the plain LE-MMSE, agreement with the network and PSNR
    to the truth against σ; one panel per data set × architecture × P × N × problem holding a smoothed
    estimator."""
    name = "fig8_smoothed"
    m = in_distribution(inputs.metrics)
    smooth = require(fix(m, estimator="smoothed"), "rows of a network against the smoothed LE-MMSE (estimator "
                     "smoothed; a study listing a smoothed estimator)", name)
    keys = ["dataset", "arch", "patch", "train_size", "task", "preinverse"]
    combos = smooth[keys].drop_duplicates()
    rows = m[m["estimator"].isin(["lemmse", "smoothed"])].merge(combos, on=keys)
    lem = fix(rows, estimator="lemmse")[keys].drop_duplicates()
    missing = combos.merge(lem, on=keys, how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"]
    if len(missing):
        raise LemmseInputError(f"{name}: no plain LE-MMSE rows beside the smoothed ones for "
                               f"{missing[keys].iloc[0].to_dict()}")
    frame = long_stats(rows, [*keys, "estimator", "smoothing", "split", "sigma"], ("psnr_net_est", "psnr_est_truth"))
    frame = sort_frame(frame, [*keys, "quantity", "estimator", "smoothing", "split", "sigma"])
    return Selection(name, frame, tuple(keys), ("quantity", "estimator", "smoothing", "split"))


def select_fig17(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 17: mean over pixels of the patch −log density (paper convention) against P, one curve per σ
    and split; one panel per data set × problem along which P varies, at the reference N."""
    name = "fig17_patch_density"
    a, n = fix_axis(lemmse_analytic(inputs, name), "train_size", ref.train_size, name, "figures.reference.train_size")
    a = varying(a, ["dataset", "task", "preinverse"], "patch")
    if a.empty:
        raise LemmseInputError(f"{name}: needs at least two patch sizes for one data set, task and pre-inverse at "
                               f"N = {n} (a patch-size study)")
    frame = sort_frame(stats(a, ["dataset", "task", "preinverse", "split", "sigma", "patch"], DENSITY_PATCH),
                       ["dataset", "task", "split", "sigma", "patch"])
    return Selection(name, frame, ("dataset", "task", "preinverse"), ("sigma", "split"), {"train_size": n})


def select_fig18_19(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 18: PSNR(net, LE-MMSE) against P (one row per architecture); Fig. 19: PSNR(LE-MMSE, truth)
    against P on test and on train images; one curve per σ; one column per data set × problem along
    which P varies, at the reference N."""
    name = "fig18_19_patch_size"
    m, n = fix_axis(lemmse_metrics(inputs, name), "train_size", ref.train_size, name, "figures.reference.train_size")
    m = varying(m, ["dataset", "arch", "task", "preinverse"], "patch")
    if m.empty:
        raise LemmseInputError(f"{name}: needs networks of at least two patch sizes for one data set, architecture, "
                               f"task and pre-inverse at N = {n} (a patch-size study)")
    fig18 = stats(m, ["dataset", "task", "preinverse", "arch", "split", "sigma", "patch"], "psnr_net_est")
    fig18 = fig18.assign(panel="fig18", quantity="psnr_net_est")
    a = fix(in_distribution(fix(inputs.analytic, estimator="lemmse")), train_size=n)
    a = a.merge(m[["dataset", "task", "preinverse"]].drop_duplicates(), on=["dataset", "task", "preinverse"])
    fig19 = stats(a, ["dataset", "task", "preinverse", "split", "sigma", "patch"], "psnr_est_truth")
    fig19 = fig19.assign(panel="fig19", quantity="psnr_est_truth", arch="")
    frame = sort_frame(pd.concat([fig18, fig19], ignore_index=True),
                       ["dataset", "task", "panel", "arch", "split", "sigma", "patch"])
    return Selection(name, frame, ("dataset", "task", "preinverse"), ("panel", "arch", "split", "sigma"),
                     {"train_size": n})


def select_fig26(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 26: PSNR(net, LE-MMSE) against N, one curve per σ and split; one panel per data set ×
    architecture × problem along which N varies, at the reference P."""
    name = "fig26_dataset_size"
    m, patch = fix_axis(lemmse_metrics(inputs, name), "patch", ref.patch, name, "figures.reference.patch")
    m = varying(m, ["dataset", "arch", "task", "preinverse"], "train_size")
    if m.empty:
        raise LemmseInputError(f"{name}: needs networks of at least two training sizes N for one data set, "
                               f"architecture, task and pre-inverse at P = {patch} (a dataset-size study)")
    frame = sort_frame(stats(m, ["dataset", "arch", "task", "preinverse", "split", "sigma", "train_size"],
                             "psnr_net_est"), ["dataset", "arch", "task", "split", "sigma", "train_size"])
    return Selection(name, frame, ("dataset", "arch", "task", "preinverse"), ("sigma", "split"), {"patch": patch})


# -- figures that also show pixels ----------------------------------------------------------------------
def _analytic_key(row, estimator: str = "lemmse", patch: int | None = None, eval_dataset: str | None = None) -> tuple:
    return ("analytic", row.dataset, eval_dataset or row.dataset, row.task, row.preinverse, estimator,
            int(row.patch if patch is None else patch), int(row.train_size))


def _network_key(row, eval_dataset: str | None = None) -> tuple:
    return ("network", row.dataset, eval_dataset or row.dataset, row.task, row.preinverse, row.arch, int(row.patch),
            int(row.train_size))


def select_fig2(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 2: MMSE, E-MMSE and LE-MMSE outputs for one test image at a small σ and their distance to
    the training set against σ; one row per data set × problem of the memorisation section (B = I,
    denoising or deconvolution). ``frame``: the distance curves; ``extra['images']``: the panels."""
    name = "fig2_memorisation"
    a = in_distribution(inputs.analytic)
    a = a[a["task"].isin(["denoising", "deconvolution"]) & a["estimator"].isin(MEMO_ESTIMATORS)]
    a = a[a["preinverse"].map(inputs.is_agnostic)] if not a.empty else a
    mmse = require(fix(a, estimator="mmse"), "analytic MMSE rows for denoising or deconvolution with B = I "
                   "(the memorisation section)", name)
    # the memorisation slice: the (dataset, task, pre-inverse, N) where the MMSE was computed
    cells = mmse[["dataset", "task", "preinverse", "train_size"]].drop_duplicates()
    if ref.memorisation_train_size is not None:
        cells = cells[cells["train_size"] == ref.memorisation_train_size]
    rows = a.merge(cells, on=["dataset", "task", "preinverse", "train_size"])
    lem = fix(rows, estimator="lemmse")
    if lem.empty:
        raise LemmseInputError(f"{name}: needs analytic LE-MMSE rows beside the MMSE ones (memorisation section)")
    lem, patch = fix_axis(lem, "patch", ref.memorisation_patch, name, "memorisation.patch")
    rows = pd.concat([rows[rows["estimator"] != "lemmse"], lem], ignore_index=True)
    frame = sort_frame(long_stats(rows, ["dataset", "task", "preinverse", "estimator", "split", "sigma"],
                                  ("nearest_train_distance", "truth_nearest_train_distance")),
                       ["dataset", "task", "estimator", "quantity", "split", "sigma"])
    panels, stores = [], []
    for (ds, task, pre), part in rows.groupby(["dataset", "task", "preinverse"], sort=False):
        split = "test" if (part["split"] == "test").any() else "train"
        sigmas = pick_sigmas(part["sigma"], 4)
        sigma = sigmas[min(1, len(sigmas) - 1)]
        image = first_image(fix(part, split=split))
        n = int(part["train_size"].iloc[0])
        for est in [e for e in MEMO_ESTIMATORS if e in set(part["estimator"])]:
            p = patch if est == "lemmse" else 0
            d = fix(part, estimator=est, split=split, image=image)
            d = d[np.isclose(d["sigma"], sigma)]["nearest_train_distance"]
            panels.append({"dataset": ds, "task": task, "preinverse": pre, "estimator": est, "patch": p,
                           "train_size": n, "split": split, "image": image, "sigma": sigma,
                           "nearest_train_distance": float(d.iloc[0]) if len(d) else np.nan})
            stores.append(("analytic", ds, ds, task, pre, est, p, n))
        stores += [("measurements", ds, task), ("data", ds)]
    images = sort_frame(pd.DataFrame(panels), ["dataset", "task"])
    return Selection(name, frame, ("dataset", "task", "preinverse"), ("estimator", "quantity", "split"),
                     {"patch": patch}, list(dict.fromkeys(stores)), {"images": images})


def fix_dataset(df: pd.DataFrame, dataset: str | None, figure: str) -> tuple[pd.DataFrame, str]:
    """Rows of ``df`` of the reference training data set; with no reference, the one data set it holds."""
    values = list(dict.fromkeys(df["dataset"]))
    if dataset is None:
        if len(values) != 1:
            raise LemmseInputError(f"{figure}: the tables hold the data sets {values} and no reference data set is "
                                   "configured; set figures.reference.dataset (or define the reference study)")
        dataset = values[0]
    out = df[df["dataset"] == dataset]
    if out.empty:
        raise LemmseInputError(f"{figure}: no rows of the reference data set {dataset!r} (figures.reference.dataset); "
                               f"the tables hold {values}")
    return out, str(dataset)


def middle_sigma(sigmas) -> float:
    """The middle of (up to) three σ spread over the grid: the σ of the galleries (Fig. 1, 13–16)."""
    picked = pick_sigmas(sigmas, 3)
    return picked[len(picked) // 2]


def gallery_rows(m: pd.DataFrame, n: int, sigma: float) -> tuple[pd.DataFrame, list[tuple]]:
    """The gallery's panels (Fig. 1 and 13–16) from LE-MMSE metrics rows ``m`` at N = ``n``: per data
    set × P × problem × split, its first image at ``sigma`` and one row per architecture with its
    PSNR(net, LE-MMSE); and the stores they read (networks, the LE-MMSE, the measurements)."""
    rows, stores = [], []
    for (ds, patch, task, pre, split), part in m.groupby(["dataset", "patch", "task", "preinverse", "split"], sort=False):
        image = first_image(part)
        for arch, cell in part.groupby("arch", sort=False):
            v = cell[(cell["image"] == image) & np.isclose(cell["sigma"], sigma)]["psnr_net_est"]
            rows.append({"dataset": ds, "patch": int(patch), "train_size": n, "task": task, "preinverse": pre,
                         "split": split, "image": image, "sigma": sigma, "arch": arch,
                         "psnr_net_est": float(v.iloc[0]) if len(v) else np.nan})
            stores.append(("network", ds, ds, task, pre, arch, int(patch), n))
        stores += [("analytic", ds, ds, task, pre, "lemmse", int(patch), n), ("measurements", ds, task)]
    return pd.DataFrame(rows), list(dict.fromkeys(stores))


def select_fig1(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 1, the overview: at the reference data set, P and N, one test image at a middle σ per
    problem (one row each): y, every architecture's output (with its PSNR to the LE-MMSE), the
    LE-MMSE and the truth. One row of ``frame`` per network panel (the gallery's rows, :func:`gallery_rows`)."""
    name = "fig1_overview"
    m, ds = fix_dataset(lemmse_metrics(inputs, name), ref.dataset, name)
    m, patch = fix_axis(m, "patch", ref.patch, name, "figures.reference.patch")
    m, n = fix_axis(m, "train_size", ref.train_size, name, "figures.reference.train_size")
    split = "test" if (m["split"] == "test").any() else "train"
    m = fix(m, split=split)
    sigma = middle_sigma(m["sigma"])
    rows, stores = gallery_rows(m, n, sigma)
    frame = sort_frame(rows, ["task", "arch"])
    return Selection(name, frame, ("task", "preinverse"), ("arch",),
                     {"dataset": ds, "patch": patch, "train_size": n, "sigma": sigma, "split": split}, stores)


def select_fig13(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 13–16, the gallery: for every data set × P the sweep holds at the reference N, one block of
    rows (problem × split): y, B y, every architecture's output (with its PSNR to the LE-MMSE), the
    LE-MMSE and the truth, for one image at a middle σ. One row of ``frame`` per network panel."""
    name = "fig13_gallery"
    m, n = fix_axis(lemmse_metrics(inputs, name), "train_size", ref.train_size, name, "figures.reference.train_size")
    sigma = middle_sigma(m["sigma"])
    rows, stores = gallery_rows(m, n, sigma)
    frame = sort_frame(rows, ["dataset", "patch", "task", "split", "arch"])
    return Selection(name, frame, ("dataset", "patch"), ("task", "preinverse", "split", "arch"),
                     {"train_size": n, "sigma": sigma}, stores)


def _with_diagnostics(a: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows whose diagnostic ``columns`` are finite; planned tables (all NaN) are kept whole."""
    if a[columns].isna().all().all():
        return a
    return a.dropna(subset=columns)


def select_fig20_22(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 20–22: the 99 %-mass count over observed pixels (mean and median per image, averaged over test
    images) against σ, one curve per problem; and the per-pixel count maps of one test image at a few σ
    (``extra['maps']``); one block per data set, at the reference P and N."""
    name = "fig20_22_mass"
    a = lemmse_analytic(inputs, name)
    a, patch = fix_axis(a, "patch", ref.patch, name, "figures.reference.patch")
    a, n = fix_axis(a, "train_size", ref.train_size, name, "figures.reference.train_size")
    a = require(_with_diagnostics(a, list(MASS_STATISTICS)), f"mass summaries ({', '.join(MASS_STATISTICS)})", name)
    split = "test" if (a["split"] == "test").any() else "train"
    a = fix(a, split=split)
    frame = sort_frame(long_stats(a, ["dataset", "task", "preinverse", "sigma"], MASS_STATISTICS, "statistic"),
                       ["dataset", "statistic", "task", "sigma"])
    frame["split"] = split
    maps, stores = [], []
    for (ds, task, pre), part in a.groupby(["dataset", "task", "preinverse"], sort=False):
        image = first_image(part)
        for s in pick_sigmas(part["sigma"], 4):
            maps.append({"dataset": ds, "task": task, "preinverse": pre, "patch": patch, "train_size": n,
                         "split": split, "image": image, "sigma": s})
        stores.append(("analytic", ds, ds, task, pre, "lemmse", patch, n))
    return Selection(name, frame, ("dataset",), ("statistic", "task", "preinverse"),
                     {"patch": patch, "train_size": n}, stores,
                     {"maps": sort_frame(pd.DataFrame(maps), ["dataset", "task", "sigma"])})


def patchwork(inputs: FigureInputs, ref: Reference, name: str, reference_dataset: bool) -> Selection:
    """The patchwork (Fig. 23–24): for every data set × problem with source maps, at the largest P the
    sweep has for it (at the reference N), one test image: the LE-MMSE estimate and its single-patch
    source map at a few σ. ``reference_dataset``: the reference data set only (Fig. 23), else every
    other training data set (Fig. 24)."""
    a, n = fix_axis(lemmse_analytic(inputs, name), "train_size", ref.train_size, name, "figures.reference.train_size")
    a = require(_with_diagnostics(a, ["distinct_sources"]), "source maps (distinct_sources)", name)
    if reference_dataset:
        a, _ = fix_dataset(a, ref.dataset, name)
    else:
        if ref.dataset is None:
            raise LemmseInputError(f"{name}: needs the reference data set (figures.reference.dataset) to tell the "
                                   "other data sets from it")
        held = list(dict.fromkeys(a["dataset"]))
        a = a[a["dataset"] != ref.dataset]
        if a.empty:
            raise LemmseInputError(f"{name}: no training data set besides the reference {ref.dataset!r} has LE-MMSE "
                                   f"source maps at N = {n} (data sets with source maps: {held}; Fig. 23 draws the "
                                   "reference one)")
    largest = a.groupby(["dataset", "task", "preinverse"], sort=False)["patch"].max().rename("largest").reset_index()
    a = a.merge(largest, on=["dataset", "task", "preinverse"])
    a = a[a["patch"] == a["largest"]]
    split = "test" if (a["split"] == "test").any() else "train"
    rows, stores = [], []
    for (ds, task, pre, patch), part in fix(a, split=split).groupby(["dataset", "task", "preinverse", "patch"], sort=False):
        image = first_image(part)
        for s in pick_sigmas(part["sigma"], 4):
            d = part[(part["image"] == image) & np.isclose(part["sigma"], s)]["distinct_sources"]
            rows.append({"dataset": ds, "task": task, "preinverse": pre, "patch": int(patch), "train_size": n,
                         "split": split, "image": image, "sigma": s,
                         "distinct_sources": float(d.iloc[0]) if len(d) else np.nan})
        stores += [("analytic", ds, ds, task, pre, "lemmse", int(patch), n), ("measurements", ds, task)]
    frame = sort_frame(pd.DataFrame(rows), ["dataset", "task", "sigma"])
    return Selection(name, frame, ("dataset", "task", "preinverse"), ("sigma",), {"train_size": n}, stores)


def select_fig23(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 23, the patchwork on the reference data set (the paper's FFHQ-32); see :func:`patchwork`."""
    return patchwork(inputs, ref, "fig23_patchwork", True)


def select_fig24(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 24, the patchwork on the other training data sets (the paper's FashionMNIST); see :func:`patchwork`."""
    return patchwork(inputs, ref, "fig24_patchwork", False)


def select_fig3(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 3, Cor. 3.7: the E-MMSE with B = I beside the E-MMSE with B = A⁺ (and their difference) for
    deconvolution (an invertible circular convolution: they coincide) and inpainting (not a convolution:
    they differ — at small σ both may copy the same training image), one test image at three σ spread
    over the grid (smallest, middle, largest); the drawing adds the shift-aware distance of the output
    to the training set (it memorises the augmented set). One row per data set × task × σ ×
    pre-inverse; N is the memorisation section's."""
    name = "fig3_emmse"
    a = in_distribution(fix(inputs.analytic, estimator="emmse"))
    a = a[a["task"].isin(["deconvolution", "inpainting"])]
    if ref.memorisation_train_size is not None:
        a = a[a["train_size"] == ref.memorisation_train_size]
    kinds = a["preinverse"].map(lambda p: inputs.preinverse_kind(p)[0]) if not a.empty else a["preinverse"]
    a = a[kinds.isin(["identity", "pinv"])].assign(kind=kinds)
    keys = ["dataset", "task", "train_size"]
    both = a.groupby(keys, sort=False)["kind"].nunique()
    both = both[both == 2].reset_index()[keys]
    a = a.merge(both, on=keys)
    if a.empty:
        raise LemmseInputError(f"{name}: the tables hold no analytic E-MMSE rows for deconvolution or inpainting under "
                               "both B = I and B = A⁺ (list both pre-inverses of a task in memorisation.problems)")
    # one label per kind (a config may name several pinv labels: the first in the config's order)
    labels = {}
    for (ds, task, n, kind), part in a.groupby([*keys, "kind"], sort=False):
        labels[ds, task, n, kind] = part["preinverse"].iloc[0]
    a = a[[labels[k] == p for k, p in zip(a[[*keys, "kind"]].itertuples(index=False, name=None), a["preinverse"])]]
    split = "test" if (a["split"] == "test").any() else "train"
    a = fix(a, split=split)
    rows, stores = [], []
    for (ds, task, n), part in a.groupby(keys, sort=False):
        image = first_image(part)
        # the σ at which the tables hold this image under both pre-inverses (each drawn row is a pair)
        kinds_at = part[part["image"] == image].groupby("sigma")["kind"].nunique()
        paired = kinds_at[kinds_at == 2].index
        for s in pick_sigmas(paired, 3):
            for kind in ("identity", "pinv"):
                pre = labels[ds, task, n, kind]
                d = part[(part["preinverse"] == pre) & (part["image"] == image) & np.isclose(part["sigma"], s)]
                rows.append({"dataset": ds, "task": task, "preinverse": pre, "kind": kind, "train_size": int(n),
                             "split": split, "image": image, "sigma": s,
                             "psnr_est_truth": float(d["psnr_est_truth"].iloc[0])})
                stores.append(("analytic", ds, ds, task, pre, "emmse", 0, int(n)))
        stores += [("measurements", ds, task), ("data", ds)]
    if not rows:
        raise LemmseInputError(f"{name}: no test image has analytic E-MMSE rows under both B = I and B = A⁺ at one σ")
    frame = _with_nearest_shifted(pd.DataFrame(rows), inputs.memorisation)
    stores.append(("memorisation",))  # the memorisation table: each output's nearest shifted training image
    # deconvolution (they coincide) before inpainting (they differ), B = I first
    frame = frame.assign(_t=frame["task"].map({"deconvolution": 0, "inpainting": 1})).sort_values(
        ["_t", "sigma", "kind"], kind="stable").drop(columns="_t")
    frame = sort_frame(frame, ["dataset"])
    return Selection(name, frame, ("dataset", "task", "sigma"), ("kind",), {"split": split},
                     list(dict.fromkeys(stores)))


#: What Fig. 3 reads of the memorisation table (:data:`lemmse.memorisation.COLUMNS`) for each E-MMSE output.
NEAREST_SHIFTED = ("distance", "nearest_index", "nearest_shift_h", "nearest_shift_w")


def _with_nearest_shifted(frame: pd.DataFrame, memorisation: pd.DataFrame | None) -> pd.DataFrame:
    """Fig. 3's rows with the shift-aware distance of each E-MMSE output to the training set and the
    shifted training image reaching it (index and shift), from the memorisation table (NaN without one:
    planning); the figure never searches the training set itself."""
    if memorisation is None:
        return frame.assign(**{c: np.nan for c in NEAREST_SHIFTED})
    keys = ["dataset", "task", "preinverse", "train_size", "split", "image", "sigma"]
    table = memorisation[memorisation["estimator"] == "emmse"][[*keys, *NEAREST_SHIFTED]]
    merged = frame.merge(table, on=keys, how="left", validate="one_to_one")
    missing = merged[merged["distance"].isna()]
    if len(missing):
        row = missing.iloc[0]
        raise LemmseInputError(f"fig3_emmse: the memorisation table has no E-MMSE row for {row['dataset']}, "
                               f"{row['task']}, {row['preinverse']}, N = {row['train_size']}, {row['split']} image "
                               f"{row['image']}, σ = {row['sigma']:g} (rerun the memorisation_table rule)")
    return merged


def select_fig7(inputs: FigureInputs, ref: Reference) -> Selection:
    """Fig. 7, out of distribution: a network trained on one data set and the LE-MMSE of that training
    set on a test image of another data set, at a few σ: y, network, LE-MMSE, truth (PSNR(net, LE-MMSE)
    in the frame). One block per (trained on → evaluated on) × architecture × P × N × problem."""
    name = "fig7_ood"
    ood = _ood_pairs(inputs, name)
    ood = fix(ood, split="test") if (ood["split"] == "test").any() else ood
    keys = ["dataset", "eval_dataset", "arch", "patch", "train_size", "task", "preinverse"]
    rows, stores = [], []
    for combo, part in ood.groupby(keys, sort=False):
        c = dict(zip(keys, combo))
        image = first_image(part)
        for s in pick_sigmas(part["sigma"], 4):
            v = part[(part["image"] == image) & np.isclose(part["sigma"], s)]["psnr_net_est"]
            rows.append({**c, "split": str(part["split"].iloc[0]), "image": image, "sigma": s,
                         "psnr_net_est": float(v.iloc[0]) if len(v) else np.nan})
        stores += [("network", c["dataset"], c["eval_dataset"], c["task"], c["preinverse"], c["arch"], int(c["patch"]),
                    int(c["train_size"])),
                   ("analytic", c["dataset"], c["eval_dataset"], c["task"], c["preinverse"], "lemmse", int(c["patch"]),
                    int(c["train_size"])), ("measurements", c["eval_dataset"], c["task"])]
    frame = sort_frame(pd.DataFrame(rows), ["dataset", "eval_dataset", "arch", "patch", "train_size", "task", "sigma"])
    return Selection(name, frame, tuple(keys), ("sigma",), {}, list(dict.fromkeys(stores)))


#: name -> selection function, in report order.
SELECTORS: dict[str, Callable[[FigureInputs, Reference], Selection]] = {
    "fig1_overview": select_fig1,
    "fig2_memorisation": select_fig2,
    "fig3_emmse": select_fig3,
    "fig5_psnr_vs_sigma": select_fig5,
    "fig9_other_datasets": select_fig9,
    "table2_architectures": select_table2,
    "fig6_alignment_vs_density": select_fig6,
    "fig7_ood": select_fig7,
    "fig8_smoothed": select_fig8,
    "fig13_gallery": select_fig13,
    "fig17_patch_density": select_fig17,
    "fig18_19_patch_size": select_fig18_19,
    "fig20_22_mass": select_fig20_22,
    "fig23_patchwork": select_fig23,
    "fig24_patchwork": select_fig24,
    "fig25_ood_psnr": select_fig25,
    "fig26_dataset_size": select_fig26,
}


def select(name: str, inputs: FigureInputs, ref: Reference | None = None) -> Selection:
    """The :class:`Selection` of figure ``name`` (fig4 reads the variance stores, not the tables)."""
    if name not in SELECTORS:
        raise LemmseInputError(f"figure {name!r} has no table selection; choose one of {', '.join(SELECTORS)}")
    return SELECTORS[name](inputs, ref or Reference())
