r"""The gather stage: every store of a plan reduced to the tidy tables of :mod:`lemmse.tables`.

:func:`metrics_table` pairs each network evaluation with its estimator store (same measurements
``y``) and computes, per (split, image, σ), PSNR(net, x), PSNR(estimate, x), PSNR(net, estimate),
PSNR(B y, estimate) and, on LE-MMSE rows whose store has them, the diagnostics (both density
conventions, the 99 %-mass summaries over observed pixels). :func:`analytic_table` describes
every estimator store on its own.
:func:`write_tables` writes both as Parquet and CSV, atomically; :func:`study_table` writes one
study's metrics rows and their labelled cube (:func:`metrics_cube`, dims = the key columns).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lemmse import store as zstore
from lemmse.metrics import psnr
from lemmse.sweep import AnalyticRun, Comparison, Plan, task_options
from lemmse.tables import (ANALYTIC_KEYS, ANALYTIC_LABELS, ANALYTIC_VALUES, DIAGNOSTIC_VALUES, METRICS_KEYS,
                           METRICS_LABELS, METRICS_VALUES)

#: Column order of the two tables.
METRICS_COLUMNS = (*METRICS_KEYS, *METRICS_LABELS, *METRICS_VALUES)
ANALYTIC_COLUMNS = (*ANALYTIC_KEYS, *ANALYTIC_LABELS, *ANALYTIC_VALUES)

log = logging.getLogger(__name__)


def _grid(store) -> tuple[list[str], np.ndarray, np.ndarray]:
    return [str(s) for s in store["split"].values], store["image"].values, store["sigma"].values


def _clean(plan: Plan, dataset: str, task: str) -> dict[str, np.ndarray]:
    from lemmse.data import load_clean

    path = plan.measurement_store(dataset, task)
    return {split: load_clean(path, split) for split in ("train", "test")}


def _preinverted(plan: Plan, dataset: str, task: str, preinverse: str, y: np.ndarray) -> np.ndarray:
    """``B y`` for measurements ``y (split, image, sigma, c, h, w)``: the configured B of ``preinverse``."""
    from lemmse.operators import preinvert

    return preinvert(y, task, **plan.preinverse(preinverse).options(), **task_options(plan.config, task))


def _diag_columns(store, kind: str, shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Diagnostic columns ``(split, image, sigma)`` of an estimator store: its own diagnostics if it is a
    plain LE-MMSE store that has them (:meth:`lemmse.sweep.Plan.wants_diagnostics`; the mass columns
    only where it ran the mass pass, :meth:`~lemmse.sweep.Plan.wants_mass`), else NaN.

    Patch densities are −(mean over pixels) of the per-pixel log-densities; image densities and mass
    summaries are read as stored."""
    from lemmse.analytic import has_diagnostics

    if kind != "lemmse" or not has_diagnostics(store):
        return {name: np.full(shape, np.nan) for name in DIAGNOSTIC_VALUES}

    def values(name: str) -> np.ndarray:
        if name not in store.data_vars:  # a mass summary of a store without the mass pass
            return np.full(shape, np.nan)
        return store[name].transpose("split", "image", "sigma", ...).values

    return {
        "neg_log_density_patch_paper": -values("patch_log_density_paper").mean(axis=(-2, -1)),
        "neg_log_density_image_paper": -values("image_log_density_paper"),
        "neg_log_density_patch_normalised": -values("patch_log_density").mean(axis=(-2, -1)),
        "neg_log_density_image_normalised": -values("image_log_density"),
        "mass99_observed_mean": values("mass99_observed_mean"),
        "mass99_observed_median": values("mass99_observed_median"),
    }


def _distinct_sources(store, kind: str, shape: tuple[int, int, int]) -> np.ndarray:
    """Number of distinct training images in the ``source`` map (single patch ≥ 50 %) per (split, image, σ)."""
    from lemmse.analytic import has_diagnostics

    if kind != "lemmse" or not has_diagnostics(store):
        return np.full(shape, np.nan)
    src = store["source"].transpose("split", "image", "sigma", "h", "w").values
    return np.array([[[len(np.unique(m[m >= 0])) for m in row] for row in block] for block in src], dtype=float)


def _frame(keys: dict, grid: tuple[list[str], np.ndarray, np.ndarray], values: dict[str, np.ndarray]) -> pd.DataFrame:
    splits, images, sigmas = grid
    s, i, g = np.meshgrid(np.arange(len(splits)), np.arange(len(images)), np.arange(len(sigmas)), indexing="ij")
    frame = pd.DataFrame({**{k: [v] * s.size for k, v in keys.items()},
                          "sigma": sigmas[g.ravel()].astype(np.float64),
                          "split": np.asarray(splits)[s.ravel()],
                          "image": images[i.ravel()].astype(np.int64)})
    for name, value in values.items():
        frame[name] = np.asarray(value, dtype=np.float64).reshape(-1)
    return frame


def comparison_rows(plan: Plan, comparison: Comparison, cache: dict) -> pd.DataFrame:
    """Rows of the metrics table for one network evaluation against one estimator store."""
    evaluation, run = comparison.evaluation, comparison.analytic
    net = zstore.open_dataset(evaluation.store(plan.results))
    est = zstore.open_dataset(run.store(plan.results))
    meas = zstore.open_dataset(plan.measurement_store(run.eval_dataset, run.task))
    key = (run.eval_dataset, run.task)
    if key not in cache:
        cache[key] = _clean(plan, *key)
    clean = cache[key]
    splits, images, sigmas = grid = _grid(est)
    x = np.stack([clean[s] for s in splits])[:, :, None]  # (split, image, 1, c, h, w)
    net_x, est_x, y = (d.transpose("split", "image", "sigma", "c", "h", "w").values
                       for d in (net["xhat"], est["xhat"], meas["y"].sel(split=splits)))
    by = _preinverted(plan, run.eval_dataset, run.task, run.preinverse, y)
    kind = plan.kind(run)
    diag = _diag_columns(est, kind, est_x.shape[:3])
    keys = plan.metrics_keys(comparison)
    values = {"psnr_net_truth": psnr(net_x, x), "psnr_est_truth": psnr(est_x, x), "psnr_net_est": psnr(net_x, est_x),
              "psnr_input_est": psnr(by, est_x)}
    values.update(diag)
    return _frame(keys, grid, values)


def analytic_rows(plan: Plan, run: AnalyticRun, cache: dict) -> pd.DataFrame:
    """Rows of the analytic table for one estimator store."""
    from lemmse.analytic import nearest_train_distance
    from lemmse.data import load_split

    est = zstore.open_dataset(run.store(plan.results))
    key = (run.eval_dataset, run.task)
    if key not in cache:
        cache[key] = _clean(plan, *key)
    clean = cache[key]
    splits, images, sigmas = grid = _grid(est)
    train = load_split(plan.data_store(run.dataset), "train", count=run.train_size)
    est_x = est["xhat"].transpose("split", "image", "sigma", "c", "h", "w").values
    x = np.stack([clean[s] for s in splits])
    dist = nearest_train_distance(est_x.reshape(-1, *est_x.shape[3:]), train).reshape(est_x.shape[:3])
    truth_dist = nearest_train_distance(x.reshape(-1, *x.shape[2:]), train).reshape(x.shape[:2])
    kind = plan.kind(run)
    diag = _diag_columns(est, kind, est_x.shape[:3])
    keys = plan.analytic_keys(run)
    values = {"psnr_est_truth": psnr(est_x, x[:, :, None]), "nearest_train_distance": dist,
              "truth_nearest_train_distance": np.broadcast_to(truth_dist[:, :, None], est_x.shape[:3]),
              **diag, "distinct_sources": _distinct_sources(est, kind, est_x.shape[:3])}
    return _frame(keys, grid, values)


def planned_tables(plan: Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The key columns of the rows the plan will produce (values NaN): what the tables will cover."""
    grid, nan = _planned_grid(plan)
    analytic = [_frame(plan.analytic_keys(a), grid, {k: nan for k in ANALYTIC_VALUES}) for a in plan.analytics]
    empty_a = pd.DataFrame(columns=list(ANALYTIC_COLUMNS))
    return (planned_metrics(plan, plan.comparisons),
            pd.concat(analytic, ignore_index=True)[empty_a.columns] if analytic else empty_a)


def planned_metrics(plan: Plan, comparisons) -> pd.DataFrame:
    """The metrics rows ``comparisons`` will produce, key and label columns only (values NaN)."""
    grid, nan = _planned_grid(plan)
    metrics = [_frame(plan.metrics_keys(c), grid, {k: nan for k in METRICS_VALUES}) for c in comparisons]
    empty = pd.DataFrame(columns=list(METRICS_COLUMNS))
    return pd.concat(metrics, ignore_index=True)[empty.columns] if metrics else empty


def _planned_grid(plan: Plan):
    m = plan.config["measurements"]
    grid = (["train", "test"], np.arange(m["n_eval"]), np.asarray(m["sigmas"], dtype=np.float64))
    return grid, np.full((2, m["n_eval"], len(m["sigmas"])), np.nan)


def metrics_table(plan: Plan) -> pd.DataFrame:
    cache: dict = {}
    frames = [comparison_rows(plan, c, cache) for c in plan.comparisons]
    if not frames:
        return pd.DataFrame(columns=list(METRICS_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(METRICS_COLUMNS)]


def analytic_table(plan: Plan) -> pd.DataFrame:
    cache: dict = {}
    frames = [analytic_rows(plan, a, cache) for a in plan.analytics]
    return pd.concat(frames, ignore_index=True)[list(ANALYTIC_COLUMNS)]


def study_table(plan: Plan, study: str, out: str | Path, cube: str | Path | None = None) -> pd.DataFrame:
    """The metrics rows of one study, written to ``out`` (Parquet) atomically, and to ``cube``
    (its labelled :func:`metrics_cube`, Zarr) when given."""
    cache: dict = {}
    frames = [comparison_rows(plan, c, cache) for c in plan.studies[study]]
    columns = list(METRICS_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_file(out, lambda p: frame.to_parquet(p, index=False))
    if cube is not None:
        dataset = metrics_cube(frame)
        dataset.attrs["study"] = study
        zstore.save_dataset(dataset, Path(cube))
    return frame


def metrics_cube(frame: pd.DataFrame):
    """``frame``'s metrics as a labelled xarray cube: one dimension per key column, dense over the
    product of the values the frame holds (NaN where a combination was not run).

    Built per study, where the product stays close to the rows (the default's noise study: 1 728
    cells for 960 rows); one cube over every axis of the paper's sweep would be ~10⁸ cells per
    variable, almost all empty, so there is none. The label columns follow from the keys and are
    left out (:data:`lemmse.tables.METRICS_LABELS`).
    """
    cube = frame.drop(columns=list(METRICS_LABELS)).set_index(list(METRICS_KEYS)).to_xarray()
    cube.attrs = {"description": "PSNR and density metrics of trained networks against analytic estimators "
                                 "(lemmse.tables documents every variable)", "rows": int(len(frame))}
    return cube


def _atomic_file(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)


def write_tables(plan: Plan, out_dir: Path) -> dict[str, Path]:
    """Write ``metrics``/``analytic`` as Parquet + CSV; returns the paths (the labelled cubes are
    per study: :func:`study_table`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"metrics": metrics_table(plan), "analytic": analytic_table(plan)}
    paths = {}
    for name, frame in tables.items():
        for suffix, writer in ((".parquet", lambda p, f=frame: f.to_parquet(p, index=False)),
                               (".csv", lambda p, f=frame: f.to_csv(p, index=False))):
            path = out_dir / f"{name}{suffix}"
            _atomic_file(path, writer)
            paths[f"{name}{suffix}"] = path
        log.info("%s: %d rows", name, len(frame))
    return paths


def load_metrics(path: str | Path) -> pd.DataFrame:
    """A results table as a DataFrame: ``.parquet``/``.csv`` directly, ``.zarr`` cube flattened (NaN rows dropped)."""
    path = Path(path)
    if path.suffix == ".zarr":
        frame = zstore.open_dataset(path).to_dataframe()
        return frame.dropna(how="all").reset_index()
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)
