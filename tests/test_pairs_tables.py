"""The tables the claims read besides metrics/analytic: net-vs-net and pre-inverse pairs, the
shift-aware memorisation table and the benchmark timings, on small stores whose numbers are
recomputed here directly."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from lemmse.claims.timing import read_timings
from lemmse.errors import LemmseInputError
from lemmse.memorisation import memorisation_table, shift_nearest_distance
from lemmse.pairs import network_pairs, pair_psnr, preinverse_pairs
from lemmse.store import save_dataset
from lemmse.plan.records import AnalyticRun, NetworkEval, NetworkRun, TrainingNoise

SIGMAS = (0.05, 0.5)
N_EVAL = 2
DIMS = ("split", "image", "sigma", "c", "h", "w")


def _xhat(rng, sigmas=SIGMAS) -> xr.Dataset:
    values = rng.random((2, N_EVAL, len(sigmas), 1, 8, 8)).astype(np.float32)
    return xr.Dataset({"xhat": (DIMS, values)},
                      coords={"split": ["train", "test"], "image": np.arange(N_EVAL), "sigma": np.array(sigmas)})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from lemmse.data import build_measurements, prepare_dataset

    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    data = prepare_dataset("digits", root / "data" / "digits.zarr", resolution=8, train_size=6, test_size=3)
    build_measurements(root / "measurements" / "digits" / "deconvolution.zarr", data, task="deconvolution",
                       sigmas=SIGMAS, n_eval=N_EVAL)
    runs = [NetworkRun("digits", "deconvolution", "identity", arch, 5, 6, TrainingNoise(0.0, 1.0)) for arch in ("unet", "resnet")]
    evals = [NetworkEval(r, "digits") for r in runs]
    for e in evals:
        save_dataset(_xhat(rng), e.store(root))
    analytics = [AnalyticRun("digits", "digits", "deconvolution", pre, est, p, 6)
                 for pre in ("identity", "pinv") for est, p in (("mmse", 0), ("emmse", 0), ("lemmse", 5))]
    for a in analytics:
        save_dataset(_xhat(rng), a.store(root))
    kinds = {"mmse": "mmse", "emmse": "emmse", "lemmse": "lemmse"}
    plan = SimpleNamespace(results=root, evaluations=evals, analytics=analytics,
                           memorisation=[a for a in analytics if a.preinverse == "identity"],
                           kind=lambda run: kinds[run.estimator],
                           data_store=lambda d: root / "data" / f"{d}.zarr",
                           measurement_store=lambda d, t: root / "measurements" / d / f"{t}.zarr")
    return plan


def _psnr(a, b):
    return 10 * np.log10(1.0 / ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())


def test_network_pairs_recomputed(world):
    t = network_pairs(world)
    assert len(t) == 2 * N_EVAL * len(SIGMAS) and set(zip(t["arch_a"], t["arch_b"])) == {("resnet", "unet")}
    a = xr.open_zarr(world.evaluations[1].store(world.results))["xhat"]  # resnet
    b = xr.open_zarr(world.evaluations[0].store(world.results))["xhat"]  # unet
    row = t[(t["split"] == "test") & (t["image"] == 1) & (t["sigma"] == 0.5)].iloc[0]
    sel = dict(split="test", image=1, sigma=0.5)
    assert row["psnr"] == pytest.approx(_psnr(a.sel(sel).values, b.sel(sel).values), rel=1e-12)


def test_preinverse_pairs_per_estimator(world):
    t = preinverse_pairs(world)
    assert sorted(t["estimator"].unique()) == ["emmse", "lemmse", "mmse"]
    assert set(zip(t["preinverse_a"], t["preinverse_b"])) == {("identity", "pinv")}
    assert len(t) == 3 * 2 * N_EVAL * len(SIGMAS)


def test_identical_stores_give_infinite_psnr_and_other_grids_are_refused(world, tmp_path):
    path = world.evaluations[0].store(world.results)
    assert np.isinf(pair_psnr(path, path)["psnr"]).all()
    other = tmp_path / "other.zarr"
    save_dataset(_xhat(np.random.default_rng(1), sigmas=(0.05, 0.6)), other)
    with pytest.raises(LemmseInputError, match="sigma"):
        pair_psnr(path, other)


def test_memorisation_table_recomputed(world):
    from lemmse.data import load_clean, load_split

    t = memorisation_table(world)
    assert sorted(t["estimator"].unique()) == ["emmse", "lemmse", "mmse"] and set(t["split"]) == {"test"}
    assert len(t) == 3 * N_EVAL * len(SIGMAS)
    train = load_split(world.data_store("digits"), "train", count=6)
    truth = load_clean(world.measurement_store("digits", "deconvolution"), "test")
    run = world.memorisation[1]
    xhat = xr.open_zarr(run.store(world.results))["xhat"].sel(split="test", image=1, sigma=0.05).values
    row = t[(t["estimator"] == "emmse") & (t["image"] == 1) & (t["sigma"] == 0.05)].iloc[0]
    shifted, plain = shift_nearest_distance(xhat[None], train)
    assert (row["distance"], row["distance_unshifted"]) == pytest.approx((shifted[0], plain[0]), rel=1e-12)
    assert row["truth_distance"] == pytest.approx(shift_nearest_distance(truth[1:2], train)[0][0], rel=1e-12)


def _tsv(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t1.0\n")


def _marker(path: Path, *shards: tuple[Path, int, float]) -> None:
    """A shard job's marker: (store, measurements, own seconds) per shard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"shards": [{"store": str(store), "first_image": 0, "first_sigma": 0, "measurements": n,
                                            "seconds": t, "cpu_seconds": t} for store, n, t in shards]}))


def test_timings_per_estimate_split_a_shard_job_by_its_shards_own_seconds(tmp_path):
    results = tmp_path / "results"
    bench = results / "benchmarks"
    lemmse, smoothed = (results / "analytic" / "d" / "denoising" / "identity" / e / "P5" / "N10" for e in
                        ("lemmse", "smoothed"))
    # job 1: a LE-MMSE shard (16 estimates, 3 s of its own) and a smoothed one (1 s): 16 s in all, 12 s the LE-MMSE's
    _tsv(bench / "analytic_shard" / "d" / "denoising" / "identity" / "lemmse" / "P5" / "N10" / "d" / "i0-s0.tsv", 16.0)
    _marker(lemmse / "d.shards" / "i0-s0.done", (lemmse / "d.zarr", 16, 3.0), (smoothed / "d.zarr", 8, 1.0))
    # job 2: one LE-MMSE shard of 4 estimates; the job's start-up is its own
    _tsv(bench / "analytic_shard" / "d" / "denoising" / "identity" / "lemmse" / "P5" / "N10" / "d" / "i4-s2.tsv", 4.0)
    _marker(lemmse / "d.shards" / "i4-s2.done", (lemmse / "d.zarr", 4, 2.0))
    _tsv(bench / "evaluate_network" / "d" / "denoising" / "identity" / "unet" / "P5" / "N10" / "sigma0-1" / "d.tsv",
         3.6)  # 2 × 6 × 3 = 36 estimates
    t = read_timings(results, n_eval=6, n_sigma=3, lemmse_labels={"lemmse"})
    formula = t[t["what"] == "formula"]
    assert formula["seconds_per_estimate"].tolist() == pytest.approx([12.0 / 16, 1.0])
    assert set(formula["patch"]) == {5} and set(formula["train_size"]) == {10} and set(formula["dataset"]) == {"d"}
    network = t[t["what"] == "network"].iloc[0]
    assert network["seconds_per_estimate"] == pytest.approx(0.1) and network["arch"] == "unet"
    assert read_timings(tmp_path / "none", n_eval=6, n_sigma=3, lemmse_labels={"lemmse"}).empty
    (lemmse / "d.shards" / "i4-s2.done").write_text("")  # an old, empty marker: named, not misread
    with pytest.raises(LemmseInputError, match="i4-s2.done: not a shard job marker"):
        read_timings(results, n_eval=6, n_sigma=3, lemmse_labels={"lemmse"})


def test_report_states_configuration_conventions_and_thresholds(tmp_path):
    from claims_fixtures import EMPTY_A, SETTINGS, metrics
    from lemmse.claims import CLAIMS, compute_claims, write_claims

    table = compute_claims(metrics(lambda **k: {"psnr_net_est": 30.0}), EMPTY_A, settings=SETTINGS)
    write_claims(table, tmp_path / "claims.md", tmp_path / "claims.csv", config_label="config/test.yaml",
                 config={"measurements": {"sigmas": [0.01, 0.1]}}, settings=SETTINGS)
    md = (tmp_path / "claims.md").read_text()
    assert "config/test.yaml" in md and "sigmas" in md and "neg_log_density_patch_paper" in md
    assert "agreement_db = 25.0" in md and "reps = 20" in md
    assert md.count("\n| ") == len(CLAIMS) + 1
    csv = pd.read_csv(tmp_path / "claims.csv")
    assert list(csv.columns) == ["id", "claim", "where", "statistic", "value", "ci_low", "ci_high", "verdict",
                                 "detail", "cells", "config"]
    agreement = csv.set_index("id").loc["agreement"]
    assert agreement["value"] == pytest.approx(30.0) and agreement["verdict"] == "holds"


def test_cli_claims_reads_the_optional_tables(tmp_path):
    from claims_fixtures import EMPTY_A, metrics, netpairs
    from lemmse.cli.main import main

    tables = tmp_path / "tables"
    tables.mkdir()
    metrics(lambda **k: {"psnr_net_est": 30.0}).to_parquet(tables / "metrics.parquet")
    EMPTY_A.to_parquet(tables / "analytic.parquet")
    assert main(["figures", "claims", "--tables", str(tables), "--out-md", str(tmp_path / "a.md"),
                 "--out-csv", str(tmp_path / "a.csv")]) == 0
    assert pd.read_csv(tmp_path / "a.csv").set_index("id").loc["architectures", "verdict"] == "not covered"
    netpairs(lambda **k: {"psnr": 31.0}).to_parquet(tables / "netpairs.parquet")
    assert main(["figures", "claims", "--tables", str(tables), "--out-md", str(tmp_path / "b.md"),
                 "--out-csv", str(tmp_path / "b.csv")]) == 0
    row = pd.read_csv(tmp_path / "b.csv").set_index("id").loc["architectures"]
    assert row["verdict"] == "holds" and row["value"] == pytest.approx(31.0)
