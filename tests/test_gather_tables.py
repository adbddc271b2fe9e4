"""Gather on a small real plan with stand-in stores: the tables carry every key and label column,
the labels resolved from the config, and psnr_input_est uses the configured B (one preinvert)."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from lemmse.gather import ANALYTIC_COLUMNS, METRICS_COLUMNS, analytic_table, metrics_table
from lemmse.operators import preinvert
from lemmse.store import save_dataset
from lemmse.plan.config import load_config
from lemmse.plan.sweep import make_plan
from workflow_helpers import REPO

DIMS = ("split", "image", "sigma", "c", "h", "w")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from lemmse.data import build_measurements, prepare_dataset

    root = tmp_path_factory.mktemp("results")
    config = load_config({
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
    plan = make_plan(config)
    prepare_dataset("digits", plan.data_store("digits"), train_size=30, test_size=4)
    for ds, task in plan.measurement_stores:
        build_measurements(plan.measurement_store(ds, task), plan.data_store(ds), task=task,
                           sigmas=config["measurements"]["sigmas"], n_eval=2, **config["tasks"][task])
    rng = np.random.default_rng(0)
    coords = {"split": ["train", "test"], "image": np.arange(2), "sigma": np.array([0.05, 0.5])}
    for store in [e.store(plan.results) for e in plan.evaluations] + [a.store(plan.results) for a in plan.analytics]:
        save_dataset(xr.Dataset({"xhat": (DIMS, rng.random((2, 2, 2, 1, 16, 16)).astype(np.float32))}, coords=coords),
                     store)
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


def test_psnr_input_est_uses_the_configured_preinverse(world):
    from lemmse import store as zstore
    from lemmse.gather import psnr

    metrics = metrics_table(world)
    c = next(c for c in world.comparisons if c.analytic.preinverse == "tik" and c.analytic.estimator == "lemmse")
    y = zstore.open_dataset(world.measurement_store("digits", "deconvolution"))["y"].sel(split="test", image=1,
                                                                                          sigma=0.5).values
    est = zstore.open_dataset(c.analytic.store(world.results))["xhat"].sel(split="test", image=1, sigma=0.5).values
    expected = psnr(preinvert(y, "deconvolution", "tikhonov", 0.1, blur_std=1.0), est)
    row = metrics[(metrics["preinverse"] == "tik") & (metrics["estimator_label"] == "lemmse")
                  & (metrics["split"] == "test") & (metrics["image"] == 1) & (metrics["sigma"] == 0.5)]
    assert row["psnr_input_est"].iloc[0] == pytest.approx(float(expected), rel=1e-9)


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
    from lemmse.store import open_dataset
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
    columns = _diag_columns(ds, "lemmse", (2, 2, 2))
    assert np.isfinite(columns["neg_log_density_patch_paper"]).all()
    assert np.isfinite(columns["mass99_observed_mean"]).all() == mass
    assert np.isnan(columns["mass99_observed_mean"]).all() != mass
