"""Claims statistics on constructed tables whose answer is known: one that holds, one that does not,
one not covered; and the written report states its configuration."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from lemmse.claims import CLAIMS, FAILS, HOLDS, NOT_COVERED, VERDICTS, compute_claims, write_claims
from lemmse.tables import ANALYTIC_KEYS, ANALYTIC_VALUES, DIAGNOSTIC_VALUES, METRICS_KEYS, METRICS_VALUES


def metrics(psnr, *, archs=("unet",), patches=(5,), sizes=(10,), sigmas=(0.01, 0.1, 1.0), estimators=(("lemmse", 0.0),),
            evals=("d",)) -> pd.DataFrame:
    """Metrics rows with psnr_net_est = psnr(arch, patch, size, sigma, split, estimator, eval) and −log p = 1/σ."""
    rows = []
    for arch, patch, n, (est, s), sigma, split, image, ev in itertools.product(
            archs, patches, sizes, estimators, sigmas, ("train", "test"), range(2), evals):
        rows.append(dict(dataset="d", eval_dataset=ev, task="denoising", preinverse="identity", arch=arch, patch=patch,
                         train_size=n, estimator=est, smoothing=s, sigma=sigma, split=split, image=image,
                         psnr_net_truth=25.0, psnr_est_truth=25.0,
                         psnr_net_est=psnr(arch=arch, patch=patch, n=n, sigma=sigma, split=split, est=est, ev=ev),
                         psnr_input_est=10.0, neg_log_density_image_paper=1.0 / sigma + image,
                         neg_log_density_patch_paper=1.0, neg_log_density_image_normalised=-1.0 / sigma,
                         neg_log_density_patch_normalised=-1.0, mass99_observed_mean=1.0,
                         mass99_observed_median=1.0))
    return pd.DataFrame(rows, columns=[*METRICS_KEYS, *METRICS_VALUES])


def analytic(value, *, patches=(3, 7), sigmas=(0.01, 1.0), estimators=("lemmse",)) -> pd.DataFrame:
    rows = []
    for est, patch, sigma, split, image in itertools.product(estimators, patches, sigmas, ("train", "test"), range(2)):
        row = dict(dataset="d", eval_dataset="d", task="denoising", preinverse="identity", estimator=est, smoothing=0.0,
                   patch=0 if est in ("mmse", "emmse") else patch, train_size=10, sigma=sigma, split=split, image=image,
                   psnr_est_truth=np.nan, nearest_train_distance=np.nan, truth_nearest_train_distance=0.2,
                   **{k: np.nan for k in DIAGNOSTIC_VALUES}, distinct_sources=np.nan)
        row.update(value(est=est, patch=patch, sigma=sigma, split=split))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*ANALYTIC_KEYS, *ANALYTIC_VALUES]).drop_duplicates(subset=list(ANALYTIC_KEYS))


def verdict(m, a, claim, variance=None) -> str:
    table = compute_claims(m, a, variance=variance)
    assert set(table["verdict"]) <= set(VERDICTS)
    return table.set_index("id").loc[claim, "verdict"]


EMPTY_A = analytic(lambda **k: {}).iloc[:0]


def test_agreement_and_train_gap():
    good = metrics(lambda sigma, split, **k: 30.0 + (5.0 * -np.log10(sigma) if split == "train" else 0.0))
    assert verdict(good, EMPTY_A, "agreement") == HOLDS
    assert verdict(good, EMPTY_A, "train_test_gap") == HOLDS
    bad = metrics(lambda sigma, split, **k: 20.0 + (1.0 if split == "test" else 0.0))
    assert verdict(bad, EMPTY_A, "agreement") == FAILS
    assert verdict(bad, EMPTY_A, "train_test_gap") == FAILS


def test_density_patch_size_architectures_dataset_size():
    falls = metrics(lambda sigma, patch, **k: 30 + 2 * np.log10(sigma) - 0.5 * patch, patches=(3, 7),
                    archs=("unet", "resnet"), sizes=(10, 100))
    for claim in ("density", "small_patches_agree", "architectures", "dataset_size"):
        assert verdict(falls, EMPTY_A, claim) == HOLDS, claim
    rises = metrics(lambda sigma, patch, arch, n, **k: 20 - 2 * np.log10(sigma) + patch + (8 if arch == "resnet" else 0)
                    + (5 if n == 100 else 0), patches=(3, 7), archs=("unet", "resnet"), sizes=(10, 100))
    for claim in ("density", "small_patches_agree", "architectures", "dataset_size"):
        assert verdict(rises, EMPTY_A, claim) == FAILS, claim
    single = metrics(lambda **k: 30.0)
    for claim in ("small_patches_agree", "architectures", "dataset_size", "smoothing", "ood", "preinverse_variance",
                  "patch_vs_sigma", "mass_concentration", "memorisation"):
        assert verdict(single, EMPTY_A, claim) == NOT_COVERED, claim


def test_patch_vs_sigma_mass_memorisation():
    paper = analytic(lambda est, patch, sigma, **k: dict(
        psnr_est_truth=30 - patch if sigma < 0.1 else 20 + patch, mass99_observed_mean=1.0 if sigma < 0.1 else 500.0,
        nearest_train_distance={"mmse": 0.001, "emmse": 0.002}.get(est, 0.15)), estimators=("mmse", "emmse", "lemmse"))
    for claim in ("patch_vs_sigma", "mass_concentration", "memorisation"):
        assert verdict(metrics(lambda **k: 30.0), paper, claim) == HOLDS, claim
    reverse = analytic(lambda est, patch, sigma, **k: dict(
        psnr_est_truth=20 + patch if sigma < 0.1 else 30 - patch, mass99_observed_mean=80.0,
        nearest_train_distance=0.001), estimators=("mmse", "lemmse"))
    for claim in ("patch_vs_sigma", "mass_concentration", "memorisation"):
        assert verdict(metrics(lambda **k: 30.0), reverse, claim) == FAILS, claim


def test_smoothing_and_ood():
    better = metrics(lambda est, ev, sigma, **k: 28 + (1.0 if est == "smoothed" else 0.0)
                     - (6 * (1 - sigma) if ev == "o" else 0.0), estimators=(("lemmse", 0.0), ("smoothed", 0.1)),
                     evals=("d", "o"))
    assert verdict(better, EMPTY_A, "smoothing") == HOLDS
    assert verdict(better, EMPTY_A, "ood") == HOLDS
    worse = metrics(lambda est, ev, sigma, **k: 28 - (1.0 if est == "smoothed" else 0.0) - (6 * sigma if ev == "o" else 0.0),
                    estimators=(("lemmse", 0.0), ("smoothed", 0.1)), evals=("d", "o"))
    assert verdict(worse, EMPTY_A, "smoothing") == FAILS
    assert verdict(worse, EMPTY_A, "ood") == FAILS


def test_preinverse_variance_from_stores(tmp_path):
    import xarray as xr

    from lemmse.store import save_dataset

    def store(task, ident, pinv):
        var = np.stack([np.full((1, 4, 4), ident), np.full((1, 4, 4), pinv)]).astype(np.float32)
        path = tmp_path / f"{task}.zarr"
        save_dataset(xr.Dataset({"variance": (("preinverse", "image", "h", "w"), var)},
                                coords={"preinverse": ["identity", "pinv"]}), path)
        return path

    m = metrics(lambda **k: 30.0)
    ok = {"inpainting": store("inpainting", 2.0, 1.0), "deconvolution": store("deconvolution", 1.0, 3.0)}
    assert verdict(m, EMPTY_A, "preinverse_variance", ok) == HOLDS
    flipped = {"deconvolution": store("deconvolution", 3.0, 1.0)}
    assert verdict(m, EMPTY_A, "preinverse_variance", flipped) == FAILS


def test_report_states_configuration(tmp_path):
    table = compute_claims(metrics(lambda **k: 30.0), EMPTY_A)
    assert len(table) == len(CLAIMS) and list(table["id"]) == [c[0] for c in CLAIMS]
    write_claims(table, tmp_path / "claims.md", tmp_path / "claims.csv", config_label="config/test.yaml",
                 config={"datasets": {"digits": {}}, "measurements": {"sigmas": [0.01, 0.1]}})
    md = (tmp_path / "claims.md").read_text()
    assert "config/test.yaml" in md and "sigmas" in md and md.count("\n| ") == len(CLAIMS) + 1
    csv = pd.read_csv(tmp_path / "claims.csv")
    assert list(csv.columns) == ["id", "claim", "where", "statistic", "value", "verdict", "config"]
