"""Gather on a small real plan with stand-in stores: the tables carry every key and label column, the
labels resolved from the config, and every value is the producers' stored value (gather only joins:
PSNR(net, estimate) is the one value it computes); a store written before its producer wrote a value
fails with a clear error. A real shard checks the configured B reaches the stored psnr_input."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import xarray as xr

from lemmse.errors import LemmseInputError
from lemmse.estimators.names import DIAGNOSTIC_MAPS, DIAGNOSTIC_SUMMARIES
from lemmse.gather import ANALYTIC_COLUMNS, METRICS_COLUMNS, analytic_table, metrics_table
from lemmse.operators import preinvert
from lemmse.store import open_dataset, save_dataset
from lemmse.plan.config import load_config
from lemmse.plan.sweep import make_plan
from lemmse.tables import DIAGNOSTIC_VALUES
from workflow_helpers import REPO

DIMS = ("split", "image", "sigma", "c", "h", "w")
GRID = (2, 2, 2)  # (split, image, sigma)
#: The estimator stores' (split, image, σ) values (lemmse.analytic.SUMMARIES and DIAGNOSTIC_REDUCTIONS).
SUMMARIES = ("psnr_truth", "psnr_input", "nearest_train_distance", "nearest_train_index",
             "truth_nearest_train_distance")
REDUCTIONS = ("neg_log_density_patch_paper", "neg_log_density_patch_normalised", "distinct_sources")


def _config(root) -> dict:
    return load_config({
        "results": str(root),
        "datasets": {"digits": {"train_size": 30, "test_size": 4}},
        "measurements": {"n_eval": 2, "sigmas": [0.05, 0.5], "image_chunk": 2},
        "tasks": {"inpainting": {"hole": 3}, "deconvolution": {"blur_std": 1.0}},
        "preinverses": {"identity": {"kind": "identity"}, "pinv": {"kind": "pinv"},
                        "tik": {"kind": "tikhonov", "lam": 0.1}},
        "estimators": {"lemmse": {"kind": "lemmse"}, "smooth-a": {"kind": "smoothed", "smoothing": 0.1, "samples": 2}},
        "studies": {"s": {"datasets": ["digits"], "archs": ["unet"], "patches": [3], "train_sizes": [20],
                          "estimators": ["lemmse", "smooth-a"],
                          "problems": [{"task": "inpainting", "preinverse": "pinv"},
                                       {"task": "deconvolution", "preinverse": "tik"}]}},
        "memorisation": {"datasets": []},
    })


def _stand_in(rng, diagnostics: bool) -> dict:
    """Random values for every variable an estimator store holds (with the diagnostics of a LE-MMSE store)."""
    summary, pixels = DIMS[:3], DIMS[:3] + ("h", "w")
    variables = {name: (DIMS, rng.random((*GRID, 1, 16, 16)).astype(np.float32)) for name in ("xhat", "by")}
    variables.update({name: (summary, rng.normal(20, 5, GRID)) for name in SUMMARIES})
    if diagnostics:
        variables.update({name: (pixels, rng.normal(size=(*GRID, 16, 16))) for name in DIAGNOSTIC_MAPS})
        variables.update({name: (summary, rng.normal(size=GRID)) for name in (*DIAGNOSTIC_SUMMARIES, *REDUCTIONS)})
    return variables


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from lemmse.data import build_measurements, prepare_dataset

    root = tmp_path_factory.mktemp("results")
    config = _config(root)
    plan = make_plan(config)
    prepare_dataset("digits", plan.data_store("digits"), train_size=30, test_size=4)
    for ds, task in plan.measurement_stores:
        build_measurements(plan.measurement_store(ds, task), plan.data_store(ds), task=task,
                           sigmas=config["measurements"]["sigmas"], n_eval=2, **config["tasks"][task])
    rng = np.random.default_rng(0)
    coords = {"split": ["train", "test"], "image": np.arange(2), "sigma": np.array([0.05, 0.5])}
    for e in plan.evaluations:
        save_dataset(xr.Dataset({"xhat": (DIMS, rng.random((*GRID, 1, 16, 16)).astype(np.float32)),
                                 "psnr_truth": (DIMS[:3], rng.normal(20, 5, GRID))}, coords=coords),
                     e.store(plan.results))
    for a in plan.analytics:
        save_dataset(xr.Dataset(_stand_in(rng, plan.wants_diagnostics(a)), coords=coords), a.store(plan.results))
    return plan


def test_tables_carry_keys_and_resolved_labels(world):
    metrics, analytic = metrics_table(world), analytic_table(world)
    assert list(metrics.columns) == list(METRICS_COLUMNS) and list(analytic.columns) == list(ANALYTIC_COLUMNS)
    tik = metrics[metrics["preinverse"] == "tik"]
    assert set(tik["preinverse_kind"]) == {"tikhonov"} and set(tik["lam"]) == {0.1}
    assert metrics[metrics["preinverse"] == "pinv"]["lam"].isna().all()
    smooth = metrics[metrics["estimator_label"] == "smooth-a"]
    assert set(smooth["estimator"]) == {"smoothed"} and set(smooth["smoothing"]) == {0.1}
    assert set(metrics["train_sigma"]) == {r.spec for r in world.networks}


def _values(path, name: str) -> np.ndarray:
    return open_dataset(path)[name].transpose("split", "image", "sigma", ...).values


def _rows(table, keys: dict):
    """The rows of ``table`` matching ``keys``, in the table's (= the stores') split, image, σ order."""
    mask = np.ones(len(table), dtype=bool)
    for column, value in keys.items():
        mask &= (table[column] == value).to_numpy()
    return table[mask]


#: Diagnostic table column <- (estimator store variable, sign).
DIAGNOSTIC_STORE = {"neg_log_density_patch_paper": ("neg_log_density_patch_paper", 1),
                    "neg_log_density_image_paper": ("image_log_density_paper", -1),
                    "neg_log_density_patch_normalised": ("neg_log_density_patch_normalised", 1),
                    "neg_log_density_image_normalised": ("image_log_density", -1),
                    "mass99_observed_mean": ("mass99_observed_mean", 1),
                    "mass99_observed_median": ("mass99_observed_median", 1)}


def test_metrics_rows_are_the_stored_values_and_psnr_net_est_joins_both_xhat(world):
    metrics = metrics_table(world)
    assert len(world.comparisons) == 4 and len(metrics) == 4 * 8
    for c in world.comparisons:
        net, est = c.evaluation.store(world.results), c.analytic.store(world.results)
        rows = _rows(metrics, {"preinverse": c.analytic.preinverse, "estimator_label": c.analytic.estimator})
        assert len(rows) == 8
        stored = {"psnr_net_truth": _values(net, "psnr_truth"), "psnr_est_truth": _values(est, "psnr_truth"),
                  "psnr_input_est": _values(est, "psnr_input")}
        for column, value in stored.items():
            np.testing.assert_array_equal(rows[column].to_numpy(), value.ravel(), err_msg=column)
        a, b = (_values(p, "xhat").astype(np.float64) for p in (net, est))
        agreement = 10 * np.log10(1 / ((a - b) ** 2).mean(axis=(3, 4, 5)))
        np.testing.assert_allclose(rows["psnr_net_est"].to_numpy(), agreement.ravel(), rtol=1e-12)
        for column in DIAGNOSTIC_VALUES:
            if world.wants_diagnostics(c.analytic):
                name, sign = DIAGNOSTIC_STORE[column]
                np.testing.assert_array_equal(rows[column].to_numpy(), sign * _values(est, name).ravel())
            else:  # the smoothed estimator: no diagnostics
                assert rows[column].isna().all(), column


def test_analytic_rows_are_the_stored_values(world):
    analytic = analytic_table(world)
    for run in world.analytics:
        est = run.store(world.results)
        rows = _rows(analytic, {"preinverse": run.preinverse, "estimator_label": run.estimator})
        assert len(rows) == 8
        for column, name in (("psnr_est_truth", "psnr_truth"), ("nearest_train_distance", "nearest_train_distance"),
                             ("truth_nearest_train_distance", "truth_nearest_train_distance")):
            np.testing.assert_array_equal(rows[column].to_numpy(), _values(est, name).ravel(), err_msg=column)
        if world.wants_diagnostics(run):
            np.testing.assert_array_equal(rows["distinct_sources"].to_numpy(), _values(est, "distinct_sources").ravel())
            np.testing.assert_array_equal(rows["neg_log_density_patch_paper"].to_numpy(),
                                          _values(est, "neg_log_density_patch_paper").ravel())
        else:
            assert rows["distinct_sources"].isna().all()


def _without(path, name: str) -> None:
    """Rewrite the store at ``path`` without ``name``: as an older lemmse wrote it."""
    ds = open_dataset(path).load()
    save_dataset(ds.drop_vars(name), path)


@pytest.mark.parametrize("store,name,table", [
    ("analytic", "psnr_input", "metrics"), ("analytic", "psnr_truth", "analytic"),
    ("analytic", "nearest_train_distance", "analytic"), ("analytic", "distinct_sources", "analytic"),
    ("analytic", "neg_log_density_patch_paper", "metrics"), ("evaluation", "psnr_truth", "metrics")])
def test_a_store_without_a_producer_value_fails_naming_it(world, tmp_path, store, name, table):
    root = tmp_path / "results"
    shutil.copytree(world.results, root)
    plan = make_plan(_config(root))
    diagnosed = next(a for a in plan.analytics if plan.wants_diagnostics(a))
    path = (diagnosed.store(root) if store == "analytic"
            else next(c.evaluation for c in plan.comparisons if c.analytic == diagnosed).store(root))
    _without(path, name)
    with pytest.raises(LemmseInputError, match=rf"{re.escape(str(path))}.*no variable '{name}'.*older lemmse.*rerun"):
        (metrics_table if table == "metrics" else analytic_table)(plan)


def test_the_configured_preinverse_reaches_the_stored_psnr_input(world, tmp_path):
    """A real shard of the Tikhonov (λ = 0.1) store: its ``by`` is B y with the configured B, and gather's
    psnr_input_est is PSNR(B y, estimate)."""
    from lemmse.analytic import compute_shard, create_store
    from lemmse.data import load_split
    from lemmse.plan.sweep import estimate_options

    run = next(a for a in world.analytics if a.preinverse == "tik" and a.estimator == "lemmse")
    measurements = world.measurement_store(run.eval_dataset, run.task)
    store = tmp_path / "s.zarr"
    create_store(store, measurements, images_per_shard=2, sigmas_per_shard=2, diagnostics=False, attrs={})
    compute_shard(store, measurements=measurements, first_image=0, first_sigma=0,
                  train=load_split(world.data_store(run.dataset), "train", count=run.train_size),
                  estimate_options=estimate_options(world.config, run))
    ds = open_dataset(store, complete=False)
    y = open_dataset(measurements)["y"].sel(split="test", image=1, sigma=0.5).values
    by = preinvert(y, "deconvolution", "tikhonov", 0.1, blur_std=1.0)
    np.testing.assert_allclose(ds["by"].sel(split="test", image=1, sigma=0.5).values, by, rtol=1e-6, atol=1e-6)
    est = ds["xhat"].sel(split="test", image=1, sigma=0.5).values.astype(np.float64)
    expected = 10 * np.log10(1 / np.mean((by - est) ** 2))
    assert float(ds["psnr_input"].sel(split="test", image=1, sigma=0.5)) == pytest.approx(expected, rel=1e-12)


def test_study_cube_is_indexed_by_the_keys_only_and_holds_the_study_rows(world, tmp_path):
    from lemmse.gather import load_metrics, study_table, write_tables
    from lemmse.tables import METRICS_KEYS, METRICS_LABELS

    paths = write_tables(world, tmp_path)
    assert "estimator_label" in load_metrics(paths["metrics.csv"]).columns
    assert not any(p.suffix == ".zarr" for p in paths.values())  # no cube over the whole sweep
    study = next(iter(world.studies))
    frame = study_table(world, study, tmp_path / "s.parquet", cube=tmp_path / "s.zarr")
    cube = xr.open_zarr(tmp_path / "s.zarr")
    assert set(cube.dims) == set(METRICS_KEYS) and not set(METRICS_LABELS) & set(cube.variables)
    assert cube.attrs["study"] == study and cube.attrs["rows"] == len(frame)
    flat = cube.to_dataframe().dropna(subset=["psnr_net_est"]).reset_index()
    merged = frame.merge(flat, on=list(METRICS_KEYS), suffixes=("", "_cube"))
    assert len(merged) == len(frame)
    np.testing.assert_array_equal(merged["psnr_net_est"], merged["psnr_net_est_cube"])


def test_paper_sweep_cubes_stay_dense_per_study_and_small():
    """config/paper.yaml's planned metrics rows: each study's cube is within a small factor of its rows,
    where one cube over every key of the sweep would hold ~10⁸ cells per variable; the peak memory of
    building every study's cube (tracemalloc) is logged for the README."""
    import logging
    import tracemalloc

    from lemmse.gather import metrics_cube, planned_metrics
    from lemmse.plan.config import load_config
    from lemmse.plan.sweep import make_plan
    from lemmse.tables import METRICS_KEYS, METRICS_LABELS

    plan = make_plan(load_config(REPO / "config" / "paper.yaml"))
    everything = planned_metrics(plan, plan.comparisons)
    product = np.prod([everything[k].nunique() for k in METRICS_KEYS], dtype=np.float64)
    assert product > 1e7  # the cube gather no longer builds
    tracemalloc.start()
    cells = {}
    for study, comparisons in plan.studies.items():
        rows = planned_metrics(plan, comparisons)
        cube = metrics_cube(rows)
        cells[study] = (int(np.prod(list(cube.sizes.values()))), len(rows))
        del cube
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    for study, (n_cells, n_rows) in cells.items():
        assert n_cells <= 8 * n_rows, (study, n_cells, n_rows)
    logging.getLogger(__name__).warning("paper.yaml: per-study cubes %s (cells, rows); peak %.0f MiB",
                                        cells, peak / 2**20)
    assert peak < 2**30


@pytest.mark.parametrize("mass", [True, False], ids=["with-mass", "without-mass"])
def test_a_store_without_the_mass_pass_has_densities_and_nan_mass_in_the_tables(world, tmp_path, mass):
    """create_store(mass=False) -> compute_shard runs no mass pass -> gather's mass columns are NaN while
    the densities are those of the estimator (and equal the store with the mass pass)."""
    from lemmse.analytic import compute_shard, create_store, finalize_store, has_diagnostics, has_mass
    from lemmse.data import load_split
    from lemmse.gather import _diag_columns
    from lemmse.plan.sweep import estimate_options

    run = next(a for a in world.analytics if a.estimator == "lemmse" and a.preinverse == "pinv")
    measurements = world.measurement_store(run.eval_dataset, run.task)
    store = tmp_path / "s.zarr"
    create_store(store, measurements, images_per_shard=2, sigmas_per_shard=2, diagnostics=True, mass=mass,
                 attrs={})
    compute_shard(store, measurements=measurements, first_image=0, first_sigma=0,
                  train=load_split(world.data_store(run.dataset), "train", count=run.train_size),
                  estimate_options=estimate_options(world.config, run))
    finalize_store(store)
    ds = open_dataset(store)
    assert has_diagnostics(ds) and has_mass(ds) == mass and ("mass99" in ds.data_vars) == mass
    columns = _diag_columns(ds, store, "lemmse", (2, 2, 2), DIAGNOSTIC_VALUES)
    assert np.isfinite(columns["neg_log_density_patch_paper"]).all()
    assert np.isfinite(columns["mass99_observed_mean"]).all() == mass
    assert np.isnan(columns["mass99_observed_mean"]).all() != mass
