r"""The gather stage: every store of a plan joined into the tidy tables of :mod:`lemmse.tables`.

Gather only reads and joins: each value column is written by the producer that has what it needs
(:mod:`lemmse.tables` says which), and read here as stored —

* the estimator stores (:mod:`lemmse.analytic`, written by each shard): PSNR(estimate, x)
  ``psnr_truth``, PSNR(B y, estimate) ``psnr_input``, the distances to the training set, the
  diagnostics and their reductions (patch densities averaged over pixels, distinct sources);
* the network evaluation stores (:func:`lemmse.training.infer.infer_store`): PSNR(net, x)
  ``psnr_truth``.

The one value computed here is PSNR(net, estimate) = ``10 log10(1 / mean((x̂_net − x̂_est)²))``:
the join of two producers' outputs, which neither producer has alone. No training set, clean image
or operator is loaded. A store written before its producer wrote these values fails with a
:class:`~lemmse.errors.LemmseInputError` naming the store and the missing variable.

:func:`metrics_table` pairs each network evaluation with its estimator store (same measurements
``y``), one row per (split, image, σ); :func:`analytic_table` describes every estimator store on
its own. :func:`write_tables` writes both as Parquet and CSV, atomically; :func:`study_table`
writes one study's metrics rows and their labelled cube (:func:`metrics_cube`, dims = the key
columns).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lemmse import store as zstore
from lemmse.errors import LemmseInputError
from lemmse.metrics import psnr
from lemmse.plan.records import AnalyticRun, Comparison
from lemmse.plan.sweep import Plan
from lemmse.tables import (ANALYTIC_KEYS, ANALYTIC_LABELS, ANALYTIC_VALUES, DIAGNOSTIC_VALUES, METRICS_KEYS,
                           METRICS_LABELS, METRICS_VALUES)

#: Column order of the two tables.
METRICS_COLUMNS = (*METRICS_KEYS, *METRICS_LABELS, *METRICS_VALUES)
ANALYTIC_COLUMNS = (*ANALYTIC_KEYS, *ANALYTIC_LABELS, *ANALYTIC_VALUES)

#: What writes each store gather reads (named in the rerun hint of a store without a variable).
ANALYTIC_PRODUCER = "the estimator's shards (rules analytic_template, analytic_shard, analytic_finalize)"
NETWORK_PRODUCER = "the network evaluation (rule evaluate_network)"

#: Analytic table column <- estimator store variable, for the columns every estimator store holds.
ANALYTIC_STORE_COLUMNS = {"psnr_est_truth": "psnr_truth", "nearest_train_distance": "nearest_train_distance",
                          "truth_nearest_train_distance": "truth_nearest_train_distance"}

log = logging.getLogger(__name__)


def _grid(store) -> tuple[list[str], np.ndarray, np.ndarray]:
    return [str(s) for s in store["split"].values], store["image"].values, store["sigma"].values


def _read(store, name: str, path, producer: str) -> np.ndarray:
    """``store[name]`` as ``(split, image, sigma, ...)`` values; a clear error naming ``path`` when the store
    was written before ``producer`` wrote ``name``."""
    if name not in store.data_vars:
        raise LemmseInputError(f"{path} has no variable {name!r}: it was written by an older lemmse, before "
                               f"{producer} wrote it; delete the store and rerun {producer}")
    return store[name].transpose("split", "image", "sigma", ...).values


#: Diagnostic table column <- (estimator store variable, sign): the store holds log-densities of whole
#: images and minus the pixel means of the patch log-densities (:mod:`lemmse.analytic`).
DIAGNOSTIC_COLUMNS = {
    "neg_log_density_patch_paper": ("neg_log_density_patch_paper", 1.0),
    "neg_log_density_image_paper": ("image_log_density_paper", -1.0),
    "neg_log_density_patch_normalised": ("neg_log_density_patch_normalised", 1.0),
    "neg_log_density_image_normalised": ("image_log_density", -1.0),
    "mass99_observed_mean": ("mass99_observed_mean", 1.0),
    "mass99_observed_median": ("mass99_observed_median", 1.0),
    "distinct_sources": ("distinct_sources", 1.0),
}


def _diag_columns(store, path, kind: str, shape: tuple[int, int, int], columns) -> dict[str, np.ndarray]:
    """The diagnostic ``columns`` (keys of :data:`DIAGNOSTIC_COLUMNS`), ``(split, image, sigma)``, of an
    estimator store as its shards wrote them: its own if it is a plain LE-MMSE store that has diagnostics
    (:meth:`lemmse.plan.sweep.Plan.wants_diagnostics`; the mass columns only where it ran the mass pass,
    :meth:`~lemmse.plan.sweep.Plan.wants_mass`), else NaN."""
    from lemmse.analytic import has_diagnostics
    from lemmse.estimators.names import MASS_DIAGNOSTICS

    if kind != "lemmse" or not has_diagnostics(store):
        return {column: np.full(shape, np.nan) for column in columns}
    out = {}
    for column in columns:
        name, sign = DIAGNOSTIC_COLUMNS[column]
        if name in MASS_DIAGNOSTICS and name not in store.data_vars:  # a store without the mass pass
            out[column] = np.full(shape, np.nan)
        else:
            out[column] = sign * _read(store, name, path, ANALYTIC_PRODUCER)
    return out


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


def comparison_rows(plan: Plan, comparison: Comparison) -> pd.DataFrame:
    """Rows of the metrics table for one network evaluation against one estimator store: the stores'
    values joined on (split, image, σ), and PSNR(net, estimate) from their two ``xhat``."""
    evaluation, run = comparison.evaluation, comparison.analytic
    net_path, est_path = evaluation.store(plan.results), run.store(plan.results)
    net, est = zstore.open_dataset(net_path), zstore.open_dataset(est_path)
    # a network trained at a fixed σ was evaluated there only: its rows are the estimates at its σ
    est = est.sel(sigma=net["sigma"].values)
    splits, images, sigmas = grid = _grid(est)
    net = net.sel(split=splits, image=images, sigma=sigmas)
    est_x = _read(est, "xhat", est_path, ANALYTIC_PRODUCER)
    diag = _diag_columns(est, est_path, plan.kind(run), est_x.shape[:3], DIAGNOSTIC_VALUES)
    values = {"psnr_net_truth": _read(net, "psnr_truth", net_path, NETWORK_PRODUCER),
              "psnr_est_truth": _read(est, "psnr_truth", est_path, ANALYTIC_PRODUCER),
              "psnr_net_est": psnr(_read(net, "xhat", net_path, NETWORK_PRODUCER), est_x),
              "psnr_input_est": _read(est, "psnr_input", est_path, ANALYTIC_PRODUCER), **diag}
    return _frame(plan.metrics_keys(comparison), grid, values)


def analytic_rows(plan: Plan, run: AnalyticRun) -> pd.DataFrame:
    """Rows of the analytic table for one estimator store: its values as its shards wrote them."""
    path = run.store(plan.results)
    est = zstore.open_dataset(path)
    grid = _grid(est)
    values = {column: _read(est, name, path, ANALYTIC_PRODUCER) for column, name in ANALYTIC_STORE_COLUMNS.items()}
    values.update(_diag_columns(est, path, plan.kind(run), values["psnr_est_truth"].shape,
                                (*DIAGNOSTIC_VALUES, "distinct_sources")))
    return _frame(plan.analytic_keys(run), grid, values)


def planned_tables(plan: Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The key columns of the rows the plan will produce (values NaN): what the tables will cover."""
    grid, nan = _planned_grid(plan)
    analytic = [_frame(plan.analytic_keys(a), grid, {k: nan for k in ANALYTIC_VALUES}) for a in plan.analytics]
    empty_a = pd.DataFrame(columns=list(ANALYTIC_COLUMNS))
    return (planned_metrics(plan, plan.comparisons),
            pd.concat(analytic, ignore_index=True)[empty_a.columns] if analytic else empty_a)


def planned_metrics(plan: Plan, comparisons) -> pd.DataFrame:
    """The metrics rows ``comparisons`` will produce, key and label columns only (values NaN)."""
    metrics = []
    for c in comparisons:
        grid, nan = _planned_grid(plan, plan.evaluated_sigmas(c.evaluation))
        metrics.append(_frame(plan.metrics_keys(c), grid, {k: nan for k in METRICS_VALUES}))
    empty = pd.DataFrame(columns=list(METRICS_COLUMNS))
    return pd.concat(metrics, ignore_index=True)[empty.columns] if metrics else empty


def _planned_grid(plan: Plan, sigmas=None):
    """The (split, image, σ) grid of a store (``sigmas``: a subset of the σ, a fixed-σ network's) and NaN values."""
    m = plan.config["measurements"]
    sigmas = np.asarray(m["sigmas"] if sigmas is None else sigmas, dtype=np.float64)
    grid = (["train", "test"], np.arange(m["n_eval"]), sigmas)
    return grid, np.full((2, m["n_eval"], len(sigmas)), np.nan)


def metrics_table(plan: Plan) -> pd.DataFrame:
    frames = [comparison_rows(plan, c) for c in plan.comparisons]
    if not frames:
        return pd.DataFrame(columns=list(METRICS_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(METRICS_COLUMNS)]


def analytic_table(plan: Plan) -> pd.DataFrame:
    frames = [analytic_rows(plan, a) for a in plan.analytics]
    return pd.concat(frames, ignore_index=True)[list(ANALYTIC_COLUMNS)]


def study_table(plan: Plan, study: str, out: str | Path, cube: str | Path | None = None) -> pd.DataFrame:
    """The metrics rows of one study, written to ``out`` (Parquet) atomically, and to ``cube``
    (its labelled :func:`metrics_cube`, Zarr) when given."""
    frames = [comparison_rows(plan, c) for c in plan.studies[study]]
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
