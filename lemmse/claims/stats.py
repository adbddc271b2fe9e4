r"""Statistics on matched cells, with a bootstrap over images.

A **cell** is one set of images that share every sweep coordinate (data set, evaluation data set,
task, pre-inverse, architecture, P, N, estimator, s, σ, split — whichever of them the table has).
Images of one cell are exchangeable, so a cell is summarised by one number, ``stat(values)`` (the
mean PSNR in dB, a Spearman ρ, …), and a claim is a function ``T`` of the cell summaries that
compares cells only along the axis it is about (σ, P, N, the architecture, the split, …).

Uncertainty: the stratified bootstrap. Replicate ``b`` resamples the images of every cell with
replacement (independently per cell), recomputes every cell summary and then ``T``; the 95 %
interval is the 2.5 and 97.5 percentiles of ``T`` over replicates. Each cell draws from its own
generator, seeded by ``(seed, crc32(claim id), crc32(cell key))``, so a cell's replicates do not
depend on which other cells the table holds: adding unmatched rows changes neither the value nor
the interval of a claim.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd


class NotCovered(Exception):
    """Raised inside a check when the tables lack what the claim needs (the message says what)."""


@dataclass(frozen=True)
class Cells:
    """Cell summaries: ``point`` (one value per cell, indexed by the cell keys) and ``boot``
    (replicates × cells, same columns as ``point``'s index)."""

    point: pd.Series
    boot: pd.DataFrame


def mean_stat(values: np.ndarray) -> np.ndarray:
    """Mean of the first column over images: ``(..., n, k) -> (...)``."""
    return values[..., 0].mean(axis=-1)


def pooled_psnr_stat(values: np.ndarray) -> np.ndarray:
    r"""PSNR of the mean MSE over images, ``−10 log10(mean_i 10^(−psnr_i/10))``: ``(..., n, k) -> (...)``.

    For outputs that may be identical (PSNR = ∞) a mean of PSNRs would be ∞ as soon as one image
    is; this is finite unless every image is identical.
    """
    mse = np.power(10.0, -values[..., 0] / 10.0).mean(axis=-1)
    with np.errstate(divide="ignore"):
        return -10.0 * np.log10(mse)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman_stat(values: np.ndarray) -> np.ndarray:
    r"""Spearman ρ between columns 0 and 1 over images (average ranks for ties), ``(..., n, 2) -> (...)``.

    ρ = Pearson correlation of the ranks; NaN where one column is constant.
    """
    a, b = _ranks(values[..., 0]), _ranks(values[..., 1])
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _canonical(value: object) -> str:
    """A cell-key part as text that does not depend on its dtype (5, 5.0 and np.int64(5) agree)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    return str(value)


def _seed(*parts: object) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def cell_summaries(df: pd.DataFrame, keys: Sequence[str], columns: Sequence[str], *, claim: str, reps: int,
                   seed: int, stat: Callable[[np.ndarray], np.ndarray] = mean_stat, min_images: int = 1) -> Cells:
    """Summarise the images of each cell of ``df`` (grouped by ``keys``) with ``stat`` over ``columns``.

    Rows with a NaN in ``columns`` are dropped; cells with fewer than ``min_images`` images are left
    out. Raises :class:`NotCovered` if no cell remains.
    """
    keys = list(keys)
    sub = df.dropna(subset=list(columns))
    table = sub[list(columns)].to_numpy(dtype=np.float64)
    point, boot = {}, {}
    claim_seed = _seed(claim)
    for key, rows in sub.groupby(keys, sort=True).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        values = table[rows]
        n = len(values)
        if n < min_images:
            continue
        point[key] = float(stat(values[None])[0])
        rng = np.random.default_rng([seed, *claim_seed, *_seed(*map(_canonical, key))])
        boot[key] = stat(values[rng.integers(0, n, size=(reps, n))])
    if not point:
        raise NotCovered(f"no cell with {min_images} or more images having {', '.join(columns)}")
    index = pd.MultiIndex.from_tuples(list(point), names=keys)
    return Cells(pd.Series(list(point.values()), index=index, dtype=np.float64),
                 pd.DataFrame(np.stack(list(boot.values()), axis=1), columns=index))


REDUCERS = ("min", "max", "median", "mean")
#: Largest number of (replicate, cell) values handed to ``per_group`` at once.
CHUNK = 2_000_000


def _reduce(values: pd.Series, how: str) -> float:
    values = values.dropna()
    return float(getattr(values, how)()) if len(values) else np.nan


def bootstrap(cells: Cells, per_group: Callable[[pd.Series], pd.Series], reduce: str,
              level: float = 0.95) -> tuple[float, float, float]:
    """``(value, low, high)`` of the claim statistic ``reduce(per_group(cell summaries))``.

    ``per_group`` maps the cell summaries to one number per compared group (it must keep any index
    level it does not compare along, so that it works unchanged on the replicates, which carry an
    extra level ``rep``); ``reduce`` (min, max, median or mean) turns those into the statistic.
    ``low``/``high``: the percentile interval of the statistic over bootstrap replicates.
    """
    if reduce not in REDUCERS:
        raise ValueError(f"reduce must be one of {REDUCERS}, got {reduce!r}")
    value = _reduce(per_group(cells.point), reduce)
    if np.isnan(value):
        return value, np.nan, np.nan
    step = max(1, CHUNK // max(1, cells.boot.shape[1]))
    parts = []
    for start in range(0, len(cells.boot), step):
        groups = per_group(_long(cells.boot.iloc[start : start + step])).dropna()
        if "rep" in groups.index.names and not groups.empty:
            parts.append(groups.groupby(level="rep").agg(reduce).to_numpy(dtype=np.float64))
    reps = np.concatenate(parts) if parts else np.zeros(0)
    # a finite statistic keeps its finite replicates (as always); an infinite one (identical outputs) keeps ±∞ ones
    reps = reps[np.isfinite(reps)] if np.isfinite(value) else reps[~np.isnan(reps)]
    if reps.size == 0:
        return value, np.nan, np.nan
    alpha = (1.0 - level) / 2.0
    # replicates may be ±∞ (identical outputs: PSNR ∞); interpolating between them would give NaN
    method = "linear" if np.isfinite(reps).all() else "inverted_cdf"
    return (value, float(np.quantile(reps, alpha, method=method)),
            float(np.quantile(reps, 1.0 - alpha, method=method)))


def _long(boot: pd.DataFrame) -> pd.Series:
    """Replicates × cells as one Series indexed by (``rep``, *cell keys), built from codes (fast)."""
    reps, n = boot.shape
    cols = boot.columns
    rows = boot.index.to_numpy()
    index = pd.MultiIndex(levels=[rows, *cols.levels],
                          codes=[np.repeat(np.arange(reps), n), *[np.tile(c, reps) for c in cols.codes]],
                          names=["rep", *cols.names])
    return pd.Series(boot.to_numpy(dtype=np.float64).ravel(), index=index)


def others(s: pd.Series, *drop: str) -> list[str]:
    """The index levels of ``s`` but ``drop`` (the group a comparison along ``drop`` keeps)."""
    return [n for n in s.index.names if n not in drop]


def ends(s: pd.Series, level: str) -> pd.DataFrame:
    """For each group of ``s`` (all index levels but ``level``): the values at the smallest and the
    largest ``level`` that group holds (columns ``first``, ``last``; ``first_at``, ``last_at`` say
    where). Groups with fewer than two values of ``level`` are dropped (nothing to compare)."""
    table = s.unstack(level).sort_index(axis=1)
    present = table.notna()
    keep = present.sum(axis=1) >= 2
    table, present = table[keep], present[keep]
    return pd.DataFrame({"first": table.bfill(axis=1).iloc[:, 0] if len(table.columns) else [],
                         "last": table.ffill(axis=1).iloc[:, -1] if len(table.columns) else [],
                         "first_at": present.idxmax(axis=1) if len(table) else [],
                         "last_at": present.iloc[:, ::-1].idxmax(axis=1) if len(table) else []}, index=table.index)
