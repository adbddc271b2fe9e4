"""What a figure reads: the two gathered tables and a resolver from keys to store paths.

A figure function has the signature ``make_x(inputs: FigureInputs, out_png: Path, *,
config_label: str = "") -> None``. :class:`FigureInputs` holds the ``metrics`` and ``analytic``
tables (:mod:`lemmse.tables`) and a :class:`StoreLayout` that turns keys into the paths of the
workflow's stores; :meth:`FigureInputs.load` builds it from the tables folder and the results
folder. Helpers here (pandas only) filter and order table rows; :mod:`lemmse.figures.select` builds
each figure's frame from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from lemmse.errors import LemmseInputError
from lemmse.plan.layout import Layout
from lemmse.plan.specs import PreInverse, lookup, preinverse_specs
from lemmse.tables import ANALYTIC_KEYS, ANALYTIC_VALUES, METRICS_KEYS, METRICS_VALUES

#: Pre-inverse labels the default config uses, label -> {kind, lam} (the config's ``preinverses``).
DEFAULT_PREINVERSES = {"identity": {"kind": "identity"}, "pinv": {"kind": "pinv"}, "adjoint": {"kind": "adjoint"}}
TASK_ORDER = ("denoising", "inpainting", "deconvolution")
ARCH_ORDER = ("unet", "resnet", "patchmlp")


#: Columns naming one trained network in the metrics table.
NETWORK_COLUMNS = ("dataset", "task", "preinverse", "arch", "patch", "train_size")
#: Columns naming one estimator store but its label, in the analytic and metrics tables.
ANALYTIC_COLUMNS = ("dataset", "eval_dataset", "task", "preinverse", "estimator", "smoothing", "patch", "train_size")


@dataclass(frozen=True)
class StoreLayout:
    """Paths of the workflow's stores under ``results``: :class:`lemmse.plan.layout.Layout`, addressed
    by the keys of the tables.

    ``network_specs`` maps a network's key (:data:`NETWORK_COLUMNS`) to its training σ spec and
    ``estimator_labels`` an estimator store's key (:data:`ANALYTIC_COLUMNS` but smoothing) to its
    config label — both read from the tables' ``train_sigma`` and ``estimator_label`` columns by
    :class:`FigureInputs`, so that no path is guessed or searched for."""

    results: Path
    network_specs: Mapping[tuple, str] = field(default_factory=dict)
    estimator_labels: Mapping[tuple, tuple[str, ...]] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        return Layout(self.results)

    def data(self, dataset: str) -> Path:
        return self.layout.data(dataset)

    def measurements(self, dataset: str, task: str) -> Path:
        return self.layout.measurements(dataset, task)

    def analytic(self, dataset: str, task: str, preinverse: str, estimator: str, patch: int, train_size: int,
                 eval_dataset: str) -> Path:
        """The estimator store; ``estimator`` a kind (its label read from the tables) or a label."""
        key = (dataset, eval_dataset, task, preinverse, estimator, int(patch), int(train_size))
        labels = self.estimator_labels.get(key, ())
        if estimator in labels or not labels:  # a label, or the store named like its kind
            label = estimator
        elif len(labels) == 1:
            label = labels[0]
        else:
            raise LemmseInputError(f"{estimator} store {key}: the tables hold several labels of that kind "
                                   f"({', '.join(labels)}); name the label")
        return self.layout.path("analytic_store", dataset=dataset, eval_dataset=eval_dataset, task=task,
                                preinverse=preinverse, estimator=label, patch=int(patch), train_size=int(train_size))

    def network(self, dataset: str, task: str, preinverse: str, arch: str, patch: int, train_size: int,
                eval_dataset: str, sigma_spec: str | None = None) -> Path:
        """The network output store; its training σ spec from the metrics table unless given."""
        if sigma_spec is None:
            key = (dataset, task, preinverse, arch, int(patch), int(train_size))
            sigma_spec = self.network_specs.get(key)
            if sigma_spec is None:
                raise LemmseInputError(f"no training σ spec for the network {key}: the metrics table has no "
                                       "train_sigma row for it (gather writes that column)")
        return self.layout.path("evaluation", dataset=dataset, task=task, preinverse=preinverse, arch=arch,
                                patch=int(patch), train_size=int(train_size), spec=sigma_spec,
                                eval_dataset=eval_dataset)

    def variance(self, dataset: str, task: str) -> Path:
        """The noise-draw variance store of :mod:`lemmse.figures.variance` (fig4)."""
        return self.layout.variance(dataset, task)

    @classmethod
    def from_tables(cls, results: str | Path, metrics: pd.DataFrame, analytic: pd.DataFrame) -> "StoreLayout":
        """The layout under ``results``, with the σ specs and estimator labels the tables carry."""
        specs: dict[tuple, str] = {}
        if "train_sigma" in metrics.columns and len(metrics):
            pairs = metrics[[*NETWORK_COLUMNS, "train_sigma"]].drop_duplicates()
            for row in pairs.itertuples(index=False, name=None):
                key, spec = _key(row[:-1]), str(row[-1])
                if specs.setdefault(key, spec) != spec:
                    raise LemmseInputError(f"the metrics table holds two training σ specs for the network {key}: "
                                           f"{specs[key]} and {spec}")
        labels: dict[tuple, tuple[str, ...]] = {}
        for table in (metrics, analytic):
            if "estimator_label" in table.columns and len(table):
                cols = [c for c in ANALYTIC_COLUMNS if c != "smoothing"]
                for row in table[[*cols, "estimator_label"]].drop_duplicates().itertuples(index=False, name=None):
                    key = _key(row[:-1])
                    labels[key] = tuple(dict.fromkeys((*labels.get(key, ()), str(row[-1]))))
        return cls(Path(results), specs, labels)


def _key(values: tuple) -> tuple:
    return tuple(int(v) if isinstance(v, (int, np.integer)) else str(v) for v in values)


@dataclass
class FigureInputs:
    """The tables and the store resolver every figure function takes.

    ``preinverses`` maps the pre-inverse labels of the tables to ``{kind, lam}`` (the config's
    ``preinverses`` section), so a figure knows which label is physics-agnostic (``kind identity``)
    and how to name it (``B y`` itself is read from the estimator stores, which hold the ``B`` their
    estimator used). ``variance_stores`` lists the fig4 stores explicitly (``None``: look under
    ``stores.variance(dataset, task)``).
    """

    metrics: pd.DataFrame
    analytic: pd.DataFrame
    stores: StoreLayout
    preinverses: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_PREINVERSES))
    variance_stores: Mapping[str, Path] | None = None
    #: Metrics rows of networks trained at one fixed σ (a study's ``train_sigmas``), split off ``metrics``
    #: by ``__post_init__``: every figure and claim is about the σ-conditioned networks of the paper, and
    #: Fig. 5 draws these beside them.
    fixed_sigma: pd.DataFrame | None = None
    #: The memorisation table (:mod:`lemmse.memorisation`, ``memorisation.parquet`` beside the others when the
    #: workflow wrote it): Fig. 3 reads each E-MMSE output's nearest shifted training image from it.
    memorisation: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        self.metrics = _check_table(self.metrics, "metrics", METRICS_KEYS, METRICS_VALUES)
        if self.fixed_sigma is None:
            self.metrics, self.fixed_sigma = split_fixed_sigma(self.metrics)
        self.analytic = _check_table(self.analytic, "analytic", ANALYTIC_KEYS, ANALYTIC_VALUES)
        known = dict(self.preinverses)
        for table in (self.metrics, self.analytic):  # labels the tables resolved (gather's label columns)
            if {"preinverse_kind", "lam"} <= set(table.columns) and len(table):
                for label, kind, lam in table[["preinverse", "preinverse_kind", "lam"]].drop_duplicates().itertuples(
                        index=False, name=None):
                    known.setdefault(label, {"kind": kind, **({"lam": float(lam)} if pd.notna(lam) else {})})
        self.preinverses = known
        if not (self.stores.network_specs or self.stores.estimator_labels):  # resolved from the tables
            self.stores = StoreLayout.from_tables(self.stores.results, self.metrics, self.analytic)

    @classmethod
    def load(cls, tables_dir: str | Path, results_dir: str | Path, *,
             preinverses: Mapping[str, Mapping[str, Any]] | None = None,
             variance_stores: Mapping[str, Path] | None = None) -> "FigureInputs":
        """Read ``metrics`` and ``analytic`` (``.parquet``, else ``.csv``) from ``tables_dir``, and
        ``memorisation.parquet`` when it is there."""
        tables = {name: read_table(Path(tables_dir), name) for name in ("metrics", "analytic")}
        memorisation = Path(tables_dir) / "memorisation.parquet"
        return cls(tables["metrics"], tables["analytic"], StoreLayout(Path(results_dir)),
                   dict(preinverses or DEFAULT_PREINVERSES), variance_stores,
                   memorisation=pd.read_parquet(memorisation) if memorisation.is_file() else None)

    # -- pre-inverse labels ----------------------------------------------------------------------------
    def preinverse_spec(self, label: str) -> PreInverse:
        """The resolved pre-inverse of a label (:mod:`lemmse.plan.specs`): the config's ``preinverses``,
        completed by the tables' ``preinverse_kind``/``lam`` columns."""
        return lookup(preinverse_specs({"preinverses": self.preinverses}), label, "preinverses")

    def preinverse_kind(self, label: str) -> tuple[str, float | None]:
        """``(kind, lam)`` of a pre-inverse label."""
        spec = self.preinverse_spec(label)
        return spec.kind, spec.lam

    def is_agnostic(self, label: str) -> bool:
        return self.preinverse_spec(label).agnostic

    def problem_label(self, task: str, preinverse: str) -> str:
        return f"{task}, {self.preinverse_spec(preinverse).name}"


def split_fixed_sigma(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows of σ-conditioned networks, rows of networks trained at one fixed σ)`` of a metrics table
    (``train_sigma_min == train_sigma_max``; a table without those columns has σ-conditioned rows only)."""
    if not {"train_sigma_min", "train_sigma_max"} <= set(metrics.columns):
        return metrics, metrics.iloc[:0]
    fixed = (metrics["train_sigma_min"] == metrics["train_sigma_max"]).to_numpy()
    return metrics[~fixed], metrics[fixed]


def read_table(folder: Path, name: str) -> pd.DataFrame:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return reader(path)
    raise LemmseInputError(f"table {name} not found in {folder} (expected {name}.parquet or {name}.csv)")


def _check_table(df: pd.DataFrame, name: str, keys: Iterable[str], values: Iterable[str]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise LemmseInputError(f"{name} table must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in (*keys, *values) if c not in df.columns]
    if missing:
        raise LemmseInputError(f"{name} table lacks the columns {', '.join(missing)} (see lemmse.tables)")
    return df


# -- selecting a consistent slice ------------------------------------------------------------------------
def require(df: pd.DataFrame, what: str, figure: str) -> pd.DataFrame:
    """``df`` if it has rows, else a clear error saying which figure needs which rows."""
    if df.empty:
        raise LemmseInputError(f"{figure}: the tables hold no {what}")
    return df


def ordered(values: Iterable, order: Iterable = ()) -> list:
    """Distinct ``values`` in a preferred ``order`` first, the rest sorted."""
    vals = list(dict.fromkeys(values))
    first = [v for v in order if v in vals]
    return first + sorted(v for v in vals if v not in first)


def in_distribution(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["eval_dataset"] == df["dataset"]]


def fix(df: pd.DataFrame, **values: Any) -> pd.DataFrame:
    """Rows of ``df`` whose columns equal ``values``."""
    mask = np.ones(len(df), dtype=bool)
    for column, value in values.items():
        mask &= (df[column] == value).to_numpy()
    return df[mask]


def problems(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, preinverse) pairs of ``df``, tasks in paper order, B = I first."""
    pairs = df[["task", "preinverse"]].drop_duplicates().itertuples(index=False)
    rank = {t: i for i, t in enumerate(TASK_ORDER)}
    return sorted(((p.task, p.preinverse) for p in pairs),
                  key=lambda p: (rank.get(p[0], 99), p[1] != "identity", p[1]))


def mean_by(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, std and count of ``value`` per group, NaN rows dropped."""
    sub = df.dropna(subset=[value])
    return sub.groupby(by, sort=True)[value].agg(["mean", "std", "count"]).reset_index()
