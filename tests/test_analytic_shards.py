"""Estimator shards on tiny real stores (8×8 digits): every value a shard writes, recomputed here
independently in float64 — PSNRs from explicit means, B from the dense forward matrix A (not from
lemmse.operators.preinvert), nearest training images by explicit differences over the whole training
set, the diagnostic reductions by plain loops — and the estimates against the estimator called directly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lemmse import store as zstore
from lemmse.analytic import (DIAGNOSTIC_REDUCTIONS, SUMMARIES, compute_shard, create_store, finalize_store,
                             nearest_train)
from lemmse.data import build_measurements, load_split, prepare_dataset
from lemmse.errors import LemmseInputError
from lemmse.operators import make_problem

SIGMAS = [0.05, 0.5]
N_EVAL, TRAIN_SIZE = 2, 20
#: name -> (estimate_options, operator parameters of the measurement store, diagnostics)
CASES = {
    "lemmse-inpainting-pinv": ({"task": "inpainting", "hole": 3, "preinverse": "pinv", "estimator": "lemmse",
                                "patch": 3}, {"hole": 3}, True),
    "mmse-deconvolution-tikhonov": ({"task": "deconvolution", "blur_std": 1.0, "preinverse": "tikhonov",
                                     "lam": 0.1, "estimator": "mmse"}, {"blur_std": 1.0}, False),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return prepare_dataset("digits", root / "digits.zarr", resolution=8, train_size=TRAIN_SIZE, test_size=4)


def _fill(path, measurements, data, options, diagnostics, shards=None):
    """A store with one image × one σ per shard; every shard (or only ``shards``) computed."""
    create_store(path, measurements, images_per_shard=1, sigmas_per_shard=1, diagnostics=diagnostics, attrs={})
    train = load_split(data, "train", TRAIN_SIZE)
    for image, sigma in shards or [(i, s) for i in range(N_EVAL) for s in range(len(SIGMAS))]:
        compute_shard(path, measurements=measurements, train=train, first_image=image, first_sigma=sigma,
                      estimate_options=options)


@pytest.fixture(scope="module", params=list(CASES))
def case(request, data, tmp_path_factory):
    options, operator, diagnostics = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    measurements = build_measurements(root / "y.zarr", data, task=options["task"], sigmas=SIGMAS, n_eval=N_EVAL,
                                      **operator)
    _fill(root / "est.zarr", measurements, data, options, diagnostics)
    finalize_store(root / "est.zarr")
    return {"store": zstore.open_dataset(root / "est.zarr"), "y": zstore.open_dataset(measurements)["y"],
            "options": options, "diagnostics": diagnostics, "data": data}


def _dense_preinverse(options: dict, h: int, w: int) -> np.ndarray:
    """B as a float64 matrix from the dense forward matrix A alone: I, A⁺ (numpy's pinv) or (AᵀA + λI)⁻¹Aᵀ."""
    operator = {k: options[k] for k in ("hole", "blur_std") if k in options}
    A = make_problem(options["task"], (h, w), **operator).forward_map.dense_matrix(1).numpy()
    kind = options["preinverse"]
    if kind == "identity":
        return np.eye(h * w)
    if kind == "pinv":
        return np.linalg.pinv(A)
    return np.linalg.solve(A.T @ A + options["lam"] * np.eye(h * w), A.T)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def test_store_layout(case):
    ds = case["store"]
    assert ds["by"].dims == ds["xhat"].dims == ("split", "image", "sigma", "c", "h", "w")
    assert ds["by"].dtype == np.float32
    names = SUMMARIES + (DIAGNOSTIC_REDUCTIONS if case["diagnostics"] else ())
    for name in names:
        assert ds[name].dims == ("split", "image", "sigma") and ds[name].dtype == np.float64, name
        assert ds[name].encoding["chunks"] == (1, 1, 1), name  # like the other summaries: one shard's block
    assert all(name not in ds for name in DIAGNOSTIC_REDUCTIONS) != case["diagnostics"]


def test_summaries_match_a_float64_brute_force(case):
    ds, y_store, options = case["store"], case["y"], case["options"]
    train = load_split(case["data"], "train", TRAIN_SIZE).astype(np.float64)
    flat_train = train.reshape(TRAIN_SIZE, -1)
    B = _dense_preinverse(options, 8, 8)
    for split in ("train", "test"):
        clean = load_split(case["data"], split).astype(np.float64)[:N_EVAL]  # the measured images: first N_EVAL
        for image in range(N_EVAL):
            truth_rms = np.sqrt(((flat_train - clean[image].ravel()) ** 2).mean(axis=1))
            for sigma in SIGMAS:
                at = dict(split=split, image=image, sigma=sigma)
                xhat = ds["xhat"].sel(**at).values.astype(np.float64)
                y = y_store.sel(**at).values.astype(np.float64)
                by = (B @ y.ravel()).reshape(y.shape)
                np.testing.assert_allclose(ds["by"].sel(**at).values, by, rtol=1e-6, atol=1e-6)
                assert float(ds["psnr_input"].sel(**at)) == pytest.approx(_psnr(by, xhat), rel=1e-10)
                assert float(ds["psnr_truth"].sel(**at)) == pytest.approx(_psnr(xhat, clean[image]), rel=1e-12)
                rms = np.sqrt(((flat_train - xhat.ravel()) ** 2).mean(axis=1))
                assert float(ds["nearest_train_distance"].sel(**at)) == pytest.approx(rms.min(), rel=1e-12, abs=1e-15)
                assert int(ds["nearest_train_index"].sel(**at)) == int(np.argmin(rms))
                assert float(ds["truth_nearest_train_distance"].sel(**at)) == pytest.approx(truth_rms.min(),
                                                                                            rel=1e-12, abs=1e-15)
        if split == "train":  # the measured training images are in the training set: distance exactly 0
            assert (ds["truth_nearest_train_distance"].sel(split="train").values == 0).all()


def test_diagnostic_reductions_match_plain_loops(case):
    ds = case["store"]
    if not case["diagnostics"]:  # nothing to reduce: the store holds no reductions either
        assert not any(name in ds for name in DIAGNOSTIC_REDUCTIONS)
        return
    for split in ("train", "test"):
        for image in range(N_EVAL):
            for sigma in SIGMAS:
                at = dict(split=split, image=image, sigma=sigma)
                for reduction, name in (("neg_log_density_patch_paper", "patch_log_density_paper"),
                                        ("neg_log_density_patch_normalised", "patch_log_density")):
                    values = ds[name].sel(**at).values.astype(np.float64).ravel().tolist()
                    assert float(ds[reduction].sel(**at)) == pytest.approx(-sum(values) / len(values), rel=1e-12)
                sources = {int(v) for v in ds["source"].sel(**at).values.ravel() if v >= 0}
                assert float(ds["distinct_sources"].sel(**at)) == len(sources)


def test_estimates_equal_the_estimator_called_directly(case):
    from lemmse.estimators import estimate

    ds, y_store = case["store"], case["y"]
    train = torch.from_numpy(load_split(case["data"], "train", TRAIN_SIZE))
    for split in ("train", "test"):
        y = y_store.sel(split=split).transpose("image", "sigma", "c", "h", "w").values  # (image, sigma, c, h, w)
        sigma = torch.tensor(np.tile(SIGMAS, N_EVAL), dtype=torch.float64)
        result = estimate(train, torch.from_numpy(y.reshape(-1, *y.shape[2:])), sigma=sigma,
                          diagnostics=case["diagnostics"], **case["options"])
        stored = ds["xhat"].sel(split=split).transpose("image", "sigma", "c", "h", "w").values
        np.testing.assert_allclose(stored, result.xhat.numpy().reshape(y.shape), rtol=1e-5, atol=1e-6)
        if case["diagnostics"]:  # float32 inputs batched differently: the densities agree to float32 rounding
            direct = {name: result.diagnostics[name].numpy().reshape(N_EVAL, len(SIGMAS), 8, 8)
                      for name in ("patch_log_density_paper", "source")}
            np.testing.assert_allclose(ds["patch_log_density_paper"].sel(split=split).values,
                                       direct["patch_log_density_paper"], rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(ds["source"].sel(split=split).values, direct["source"])


def test_a_shard_job_across_two_stores_writes_what_their_shards_write_alone(data, tmp_path):
    """One job running the last shard of one store and the first of another (two training sets, two
    measurement stores) leaves both stores as shard-by-shard calls do, and records each shard."""
    from lemmse.analytic import compute_shard_job

    stores = {}
    for name in CASES:
        options, operator, diagnostics = CASES[name]
        measurements = build_measurements(tmp_path / f"{name}-y.zarr", data, task=options["task"], sigmas=SIGMAS,
                                          n_eval=N_EVAL, **operator)
        for kind in ("alone", "job"):
            create_store(tmp_path / f"{name}-{kind}.zarr", measurements, images_per_shard=1, sigmas_per_shard=1,
                         diagnostics=diagnostics, attrs={})
        stores[name] = (options, measurements)
    (first, (options_a, y_a)), (second, (options_b, y_b)) = stores.items()
    shards = [{"store": str(tmp_path / f"{first}-job.zarr"), "measurements": str(y_a), "data": str(data),
               "train_size": TRAIN_SIZE, "first_image": 1, "first_sigma": 1, "estimate_options": options_a},
              {"store": str(tmp_path / f"{second}-job.zarr"), "measurements": str(y_b), "data": str(data),
               "train_size": TRAIN_SIZE - 5, "first_image": 0, "first_sigma": 0, "estimate_options": options_b}]
    records = compute_shard_job(shards)
    assert [(r["store"], r["first_image"], r["first_sigma"], r["measurements"]) for r in records] == [
        (s["store"], s["first_image"], s["first_sigma"], 2) for s in shards]  # one image × one σ × both splits
    assert all(r["seconds"] > 0 and r["cpu_seconds"] >= 0 for r in records)
    compute_shard(tmp_path / f"{first}-alone.zarr", measurements=y_a, train=load_split(data, "train", TRAIN_SIZE),
                  first_image=1, first_sigma=1, estimate_options=options_a)
    compute_shard(tmp_path / f"{second}-alone.zarr", measurements=y_b,
                  train=load_split(data, "train", TRAIN_SIZE - 5), first_image=0, first_sigma=0,
                  estimate_options=options_b)
    for name in stores:
        alone = zstore.open_dataset(tmp_path / f"{name}-alone.zarr", complete=False)
        job = zstore.open_dataset(tmp_path / f"{name}-job.zarr", complete=False)
        assert sorted(alone.data_vars) == sorted(job.data_vars)
        for var in alone.data_vars:
            np.testing.assert_array_equal(job[var].values, alone[var].values, err_msg=f"{name} {var}")
        assert np.isfinite(job["xhat"].values).sum() == 2 * 8 * 8  # that shard's values only


def test_a_shard_job_opens_each_store_once_and_writes_what_its_shards_write_alone(data, tmp_path, monkeypatch):
    """Three shards of one store in one job open its stores as often as one shard does (ShardReads:
    once each, the clean images once per split), and the store ends equal to one filled shard by shard."""
    from collections import Counter

    import lemmse.data.measurements as measurements_module
    from lemmse.analytic import compute_shard_job

    options, operator, diagnostics = CASES["lemmse-inpainting-pinv"]
    y = build_measurements(tmp_path / "y.zarr", data, task=options["task"], sigmas=SIGMAS, n_eval=N_EVAL, **operator)
    _fill(tmp_path / "alone.zarr", y, data, options, diagnostics)
    create_store(tmp_path / "job.zarr", y, images_per_shard=1, sigmas_per_shard=1, diagnostics=diagnostics, attrs={})
    opened = Counter()
    for module, name in ((zstore, "open_dataset"), (measurements_module, "open_measurements"),
                         (measurements_module, "open_data")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda path, *a, _real=real, **k: opened.update([str(path)]) or _real(
            path, *a, **k))
    shards = [{"store": str(tmp_path / "job.zarr"), "measurements": str(y), "data": str(data),
               "train_size": TRAIN_SIZE, "first_image": i, "first_sigma": s, "estimate_options": options}
              for i in range(N_EVAL) for s in range(len(SIGMAS))]
    compute_shard_job(shards[:1])
    one_shard, opened = dict(opened), Counter()
    assert len(compute_shard_job(shards[1:])) == 3
    assert dict(opened) == one_shard  # three shards open what one does
    assert one_shard[str(tmp_path / "job.zarr")] == 1
    alone = zstore.open_dataset(tmp_path / "alone.zarr", complete=False)
    job = zstore.open_dataset(tmp_path / "job.zarr", complete=False)
    for var in alone.data_vars:
        np.testing.assert_array_equal(job[var].values, alone[var].values, err_msg=var)


def test_nearest_train_finds_exact_copies_across_blocks(device):
    """Blocks of the training set (a tiny memory budget) give the brute-force minimum and the first index,
    on every device (the shards run it on theirs)."""
    rng = np.random.default_rng(0)
    train = rng.random((7, 1, 4, 4))
    images = np.stack([train[5], train[2] + 1e-9, rng.random((1, 4, 4))])
    distance, index = nearest_train(images, train, device=device, max_memory=8 * 20)  # 1 training image per block
    brute = np.sqrt(((images[:, None] - train[None]) ** 2).mean(axis=(2, 3, 4)))
    np.testing.assert_allclose(distance, brute.min(axis=1), rtol=1e-12, atol=1e-15)
    assert distance[0] == 0 and index.tolist() == np.argmin(brute, axis=1).tolist()


def test_finalize_names_every_missing_value(data, tmp_path):
    options, operator, _ = CASES["mmse-deconvolution-tikhonov"]
    measurements = build_measurements(tmp_path / "y.zarr", data, task="deconvolution", sigmas=SIGMAS, n_eval=N_EVAL,
                                      **operator)
    _fill(tmp_path / "est.zarr", measurements, data, options, False, shards=[(0, 0)])
    with pytest.raises(LemmseInputError, match=r"still missing: xhat 6, by 6, psnr_truth 6, psnr_input 6, "
                                               r"nearest_train_distance 6.*run every shard"):
        finalize_store(tmp_path / "est.zarr")
    assert not zstore.is_complete(tmp_path / "est.zarr")


def test_finalize_refuses_a_store_of_an_older_layout(tmp_path):
    """A template without the summaries (created by an older lemmse) cannot be finalized: rerun it."""
    zstore.create_template(tmp_path / "old.zarr", coords={"split": ["train", "test"], "image": np.arange(2),
                                                          "sigma": np.array(SIGMAS)},
                           sizes={"c": 1, "h": 8, "w": 8},
                           variables={"xhat": zstore.VariableSpec(("split", "image", "sigma", "c", "h", "w"),
                                                                  (1, 1, 1, 1, 8, 8))})
    with pytest.raises(LemmseInputError, match=r"old\.zarr: no variable by, psnr_truth.*rerun its template"):
        finalize_store(tmp_path / "old.zarr")
