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
from lemmse.tables import ANALYTIC_KEYS, ANALYTIC_VALUES, METRICS_KEYS, METRICS_VALUES

#: Pre-inverse labels the default config uses, label -> {kind, lam} (the config's ``preinverses``).
DEFAULT_PREINVERSES = {"identity": {"kind": "identity"}, "pinv": {"kind": "pinv"}, "adjoint": {"kind": "adjoint"}}
TASK_ORDER = ("denoising", "inpainting", "deconvolution")
ARCH_ORDER = ("unet", "resnet", "patchmlp")


@dataclass(frozen=True)
class StoreLayout:
    """Paths of the workflow's stores under ``results`` (the layout of DESIGN.md and the lead's rules)."""

    results: Path

    def data(self, dataset: str) -> Path:
        return Path(self.results) / "data" / f"{dataset}.zarr"

    def measurements(self, dataset: str, task: str) -> Path:
        return Path(self.results) / "measurements" / dataset / f"{task}.zarr"

    def analytic(self, dataset: str, task: str, preinverse: str, estimator: str, patch: int, train_size: int,
                 eval_dataset: str) -> Path:
        return (Path(self.results) / "analytic" / dataset / task / preinverse / estimator / f"P{int(patch)}"
                / f"N{int(train_size)}" / f"{eval_dataset}.zarr")

    def network(self, dataset: str, task: str, preinverse: str, arch: str, patch: int, train_size: int,
                eval_dataset: str, sigma_spec: str | None = None) -> Path:
        """The network output store; with ``sigma_spec=None`` the one ``sigma*`` folder there is."""
        base = (Path(self.results) / "networks" / dataset / task / preinverse / arch / f"P{int(patch)}"
                / f"N{int(train_size)}")
        if sigma_spec is not None:
            return base / f"sigma{sigma_spec}" / f"{eval_dataset}.zarr"
        found = sorted(base.glob(f"sigma*/{eval_dataset}.zarr"))
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} ({', '.join(p.parent.name for p in found)})"
            raise LemmseInputError(f"{base}: expected one sigma*/{eval_dataset}.zarr network store, found {what}")
        return found[0]

    def variance(self, dataset: str, task: str) -> Path:
        """The noise-draw variance store of :mod:`lemmse.figures.variance` (fig4)."""
        return Path(self.results) / "variance" / dataset / f"{task}.zarr"


@dataclass
class FigureInputs:
    """The tables and the store resolver every figure function takes.

    ``preinverses`` maps the pre-inverse labels of the tables to ``{kind, lam}`` (the config's
    ``preinverses`` section), so a figure knows which label is physics-agnostic (``kind identity``)
    and can apply ``B`` to ``y`` for display; ``tasks`` is the config's ``tasks`` section (the hole and
    blur of the operators, so that ``B`` is the configured one). ``variance_stores`` lists the fig4 stores explicitly
    (``None``: look under ``stores.variance(dataset, task)``).
    """

    metrics: pd.DataFrame
    analytic: pd.DataFrame
    stores: StoreLayout
    preinverses: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_PREINVERSES))
    variance_stores: Mapping[str, Path] | None = None
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = _check_table(self.metrics, "metrics", METRICS_KEYS, METRICS_VALUES)
        self.analytic = _check_table(self.analytic, "analytic", ANALYTIC_KEYS, ANALYTIC_VALUES)

    @classmethod
    def load(cls, tables_dir: str | Path, results_dir: str | Path, *,
             preinverses: Mapping[str, Mapping[str, Any]] | None = None,
             variance_stores: Mapping[str, Path] | None = None,
             tasks: Mapping[str, Mapping[str, Any]] | None = None) -> "FigureInputs":
        """Read ``metrics`` and ``analytic`` (``.parquet``, else ``.csv``) from ``tables_dir``."""
        tables = {name: read_table(Path(tables_dir), name) for name in ("metrics", "analytic")}
        return cls(tables["metrics"], tables["analytic"], StoreLayout(Path(results_dir)),
                   dict(preinverses or DEFAULT_PREINVERSES), variance_stores, dict(tasks or {}))

    # -- pre-inverse labels ----------------------------------------------------------------------------
    def preinverse_kind(self, label: str) -> tuple[str, float | None]:
        """``(kind, lam)`` of a pre-inverse label, from the configuration's ``preinverses``."""
        spec = self.preinverses.get(label)
        if spec is not None:
            return str(spec["kind"]), (float(spec["lam"]) if spec.get("lam") is not None else None)
        if label in ("identity", "pinv", "adjoint"):
            return label, None
        raise LemmseInputError(f"pre-inverse label {label!r} is not in the configuration's preinverses "
                               f"({', '.join(self.preinverses)}); pass the workflow config")

    def is_agnostic(self, label: str) -> bool:
        return self.preinverse_kind(label)[0] == "identity"

    def problem_label(self, task: str, preinverse: str) -> str:
        kind, lam = self.preinverse_kind(preinverse)
        names = {"identity": "B = I", "pinv": "B = A⁺", "adjoint": "B = Aᵀ"}
        b = names[kind] if kind in names else f"B = Tikhonov, λ = {lam:g}"
        return f"{task}, {b}"


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
