"""The paper-shaped results test: tables with exactly the coordinates config/paper.yaml plans.

The rows are the planned rows of the paper config (:func:`lemmse.gather.planned_tables` of
:func:`lemmse.plan.sweep.make_plan`; two images per split instead of the config's n_eval, every other
coordinate as planned), filled with fabricated values. Every figure must be covered, and its
selection must hold the facets and series the paper's figure has (Fig. 5: 3 data sets × 3
architectures × the 5 problems; Fig. 17: P ∈ {5, 7, 9, 11}; Fig. 7: trained on FFHQ, evaluated on
CIFAR-10; …), with P and N at the configured reference, not at an extreme of the axis. Then, on
random subsets of those tables (hypothesis) with tiny stores behind them: covered ⇒ renders.
"""
from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lemmse.figures import FIGURES, FigureInputs, Reference, Selection, StoreLayout, coverage, make_figure, selections
from lemmse.tables import DIAGNOSTIC_VALUES
from figure_fixtures import memorisation_table

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"
NOISE_PROBLEMS = {("denoising", "identity"), ("inpainting", "identity"), ("inpainting", "pinv"),
                  ("deconvolution", "identity"), ("deconvolution", "pinv")}
DATASETS = {"ffhq", "cifar10", "fashion_mnist"}
ARCHS = {"unet", "resnet", "patchmlp"}


def paper_plan():
    """The plan of config/paper.yaml with two images per split, without its data sets on disk."""
    import yaml

    import lemmse.data as data
    from lemmse.plan.config import load_config
    from lemmse.plan.sweep import make_plan

    real = data.get_spec

    def no_files(name):  # the files of FFHQ / CIFAR-10 / FashionMNIST are not here; planning needs none
        spec = real(name)
        return dataclasses.replace(spec, check=lambda resolved: None) if "root" in spec.defaults else spec

    raw = yaml.safe_load(PAPER.read_text())
    raw["measurements"]["n_eval"] = 2
    mp = pytest.MonkeyPatch()
    mp.setattr(data, "get_spec", no_files)
    try:
        config = load_config(raw)
        return make_plan(config)
    finally:
        mp.undo()


def fabricate(metrics: pd.DataFrame, analytic: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill the planned rows with values shaped like the paper's (diagnostics on LE-MMSE rows only)."""
    rng = np.random.default_rng(seed)
    m, a = metrics.copy(), analytic.copy()
    for df in (m, a):
        s = df["sigma"].to_numpy(dtype=float)
        df["psnr_est_truth"] = 30 - 10 * np.sqrt(s) + rng.normal(0, 0.3, len(df))
        lem = (df["estimator"] == "lemmse").to_numpy()
        for col in DIAGNOSTIC_VALUES:
            df[col] = np.where(lem, rng.uniform(1, 100, len(df)), np.nan)
    m["psnr_net_truth"] = m["psnr_est_truth"] - 0.5
    m["psnr_net_est"] = 32 - 3 * np.log10(m["sigma"].to_numpy(dtype=float)) * -1 + rng.normal(0, 0.5, len(m))
    m["psnr_input_est"] = 15 + rng.normal(0, 1, len(m))
    a["nearest_train_distance"] = rng.uniform(0, 0.3, len(a))
    a["truth_nearest_train_distance"] = rng.uniform(0.1, 0.3, len(a))
    a["distinct_sources"] = np.where(a["estimator"] == "lemmse", rng.integers(1, 20, len(a)), np.nan)
    return m, a


@pytest.fixture(scope="module")
def paper():
    from lemmse.gather import planned_tables

    plan = paper_plan()
    planned = planned_tables(plan)
    metrics, analytic = fabricate(*planned)
    return plan, planned, metrics, analytic, selections(metrics, analytic, config=plan.config)


def facets(sel: Selection, *columns) -> set[tuple]:
    return set(sel.frame[list(columns)].drop_duplicates().itertuples(index=False, name=None))


def test_every_figure_is_covered(paper):
    plan, planned, metrics, analytic, chosen = paper
    why = coverage(metrics, analytic, variance=bool(plan.variance_tasks()), config=plan.config)
    assert why == {name: None for name in FIGURES}
    # the planned rows (values NaN) give the same verdict and the same facets
    planned_sel = selections(*planned, config=plan.config)
    for name, sel in chosen.items():
        assert facets(planned_sel[name], *sel.facets) == facets(sel, *sel.facets), name
    # the workflow plans from the first image's rows only (common.smk): the same facets and stores
    first = selections(*(t[t["image"] == 0] for t in planned), config=plan.config)
    for name, sel in chosen.items():
        assert first[name].facet_values() == sel.facet_values() and first[name].stores == sel.stores, name


def test_reference_is_the_noise_study_not_max_n(paper):
    plan, *_ = paper
    ref = Reference.from_config(plan.config)
    assert (ref.patch, ref.train_size) == (5, 10000)  # not N = 50000 of the dataset-size study
    assert (ref.memorisation_patch, ref.memorisation_train_size) == (5, 1000)
    assert ref.dataset == "ffhq"  # the noise study's first: Fig. 1 and 23 (the paper's FFHQ-32)


def test_fig5_rows_are_datasets_by_architectures(paper):
    *_, chosen = paper
    sel = chosen["fig5_psnr_vs_sigma"]
    assert sel.fixed == {"patch": 5, "train_size": 10000}
    assert facets(sel, "dataset", "arch") == set(itertools.product(DATASETS, ARCHS))
    for (ds, arch), part in sel.frame.groupby(["dataset", "arch"]):
        assert NOISE_PROBLEMS <= set(part[["task", "preinverse"]].itertuples(index=False, name=None)), (ds, arch)
    # the Tikhonov problems of the pre-inverse study (FFHQ, UNet, same P and N) are drawn too
    ffhq_unet = sel.frame[(sel.frame.dataset == "ffhq") & (sel.frame.arch == "unet")]
    assert {"tik1e-3", "tik1e-2", "tik1e-1"} <= set(ffhq_unet["preinverse"])
    assert set(sel.frame["quantity"]) == {"psnr_net_est", "psnr_net_truth", "psnr_est_truth"}
    assert set(sel.frame["split"]) == {"train", "test"}
    assert len(set(sel.frame["sigma"])) == len(plan_sigmas(paper))
    assert "ffhq64" not in set(sel.frame["dataset"])  # P = 11 only: not the reference slice
    assert list(dict.fromkeys(sel.frame["dataset"])) == ["ffhq", "cifar10", "fashion_mnist"]  # the config's order


def test_fig9_draws_the_64x64_study(paper):
    plan, *_, chosen = paper
    study = plan.config["studies"]["ffhq64"]
    sel = chosen["fig9_other_datasets"]
    assert facets(sel, "dataset", "arch", "patch", "train_size") == {
        ("ffhq64", a, p, n) for a in study["archs"] for p in study["patches"] for n in study["train_sizes"]}
    assert facets(sel, "task", "preinverse") == {(p["task"], p["preinverse"]) for p in study["problems"]}


def plan_sigmas(paper) -> list[float]:
    return paper[0].config["measurements"]["sigmas"]


def test_table2_and_fig6_cover_every_architecture_and_dataset(paper):
    *_, chosen = paper
    t2 = chosen["table2_architectures"]
    assert facets(t2, "arch", "dataset") == set(itertools.product(ARCHS, DATASETS))
    assert set(t2.frame["split"]) == {"train", "test"}
    f6 = chosen["fig6_alignment_vs_density"]
    assert facets(f6, "dataset", "arch") == set(itertools.product(DATASETS, ARCHS))
    assert f6.frame["neg_log_density_image_paper"].notna().all()


def test_patch_size_figures(paper):
    *_, chosen = paper
    f17 = chosen["fig17_patch_density"]
    assert f17.fixed == {"train_size": 10000}
    assert facets(f17, "dataset", "task", "preinverse") == {
        (d, t, p) for d in DATASETS for t, p in [("denoising", "identity"), ("inpainting", "pinv")]}
    for _, part in f17.frame.groupby(["dataset", "task", "preinverse"]):
        assert sorted(part["patch"].unique()) == [5, 7, 9, 11]
    f18 = chosen["fig18_19_patch_size"]
    assert set(f18.frame["panel"]) == {"fig18", "fig19"}
    fig19 = f18.frame[f18.frame.panel == "fig19"]
    assert set(fig19["split"]) == {"train", "test"}  # Fig. 19 has its train panel
    assert sorted(fig19["patch"].unique()) == [5, 7, 9, 11]
    assert set(f18.frame[f18.frame.panel == "fig18"]["arch"]) == {"unet"}


def test_dataset_size_figure(paper):
    *_, chosen = paper
    sel = chosen["fig26_dataset_size"]
    assert sel.fixed == {"patch": 5}
    assert facets(sel, "dataset", "arch", "task", "preinverse") == {
        ("ffhq", "unet", "denoising", "identity"), ("cifar10", "unet", "denoising", "identity")}
    assert sorted(sel.frame["train_size"].unique()) == [100, 1000, 10000, 50000]


def test_ood_figures_train_on_ffhq_and_evaluate_on_cifar(paper):
    *_, chosen = paper
    f7 = chosen["fig7_ood"]
    pairs = facets(f7, "dataset", "eval_dataset")
    assert pairs == {("ffhq", "cifar10"), ("cifar10", "ffhq")}
    assert f7.facet_values()[0][:2] == ("ffhq", "cifar10")  # drawn first, as in the paper
    assert set(f7.frame["split"]) == {"test"} and set(f7.frame["arch"]) == {"unet"}
    assert ("network", "ffhq", "cifar10", "denoising", "identity", "unet", 5, 10000) in f7.stores
    f25 = chosen["fig25_ood_psnr"]
    ffhq = f25.frame[f25.frame.dataset == "ffhq"]
    assert set(ffhq["eval_dataset"]) == {"ffhq", "cifar10"}  # OOD beside in-distribution
    assert set(ffhq[~ffhq.in_distribution]["eval_dataset"]) == {"cifar10"}


def test_smoothed_gallery_mass_patchwork_memorisation(paper):
    *_, chosen = paper
    f8 = chosen["fig8_smoothed"]
    assert facets(f8, "dataset", "arch", "patch", "train_size", "task", "preinverse") == {
        ("ffhq", "unet", 5, 10000, "denoising", "identity"), ("ffhq", "unet", 5, 10000, "deconvolution", "pinv")}
    assert set(f8.frame["smoothing"]) == {0.0, 0.01, 0.05}
    f13 = chosen["fig13_gallery"]
    assert facets(f13, "dataset", "patch") == {(d, p) for d in DATASETS for p in (5, 7, 9, 11)} | {("ffhq64", 11)}
    assert set(f13.frame[(f13.frame.dataset == "cifar10") & (f13.frame.patch == 5)]["arch"]) == ARCHS
    f20 = chosen["fig20_22_mass"]
    assert f20.fixed == {"patch": 5, "train_size": 10000}
    assert set(f20.frame["dataset"]) == DATASETS
    assert set(f20.frame["statistic"]) == {"mass99_observed_mean", "mass99_observed_median"}
    assert set(f20.frame["split"]) == {"test"}
    f23, f24 = chosen["fig23_patchwork"], chosen["fig24_patchwork"]
    largest = {(d, t, p): P for f in (f23, f24) for d, t, p, P in f.frame[["dataset", "task", "preinverse", "patch"]]
               .drop_duplicates().itertuples(index=False, name=None)}
    assert largest[("ffhq", "denoising", "identity")] == 11 and largest[("ffhq", "deconvolution", "identity")] == 5
    assert largest[("ffhq64", "inpainting", "pinv")] == 11
    assert set(f23.frame["dataset"]) == {"ffhq"}  # Fig. 23: FFHQ-32, the reference data set
    assert set(f24.frame["dataset"]) == {"cifar10", "fashion_mnist", "ffhq64"}  # Fig. 24: FashionMNIST and the rest
    assert f23.fixed == f24.fixed == {"train_size": 10000}
    f1 = chosen["fig1_overview"]
    assert f1.fixed == {"dataset": "ffhq", "patch": 5, "train_size": 10000, "sigma": f1.fixed["sigma"], "split": "test"}
    assert set(f1.facet_values()) == NOISE_PROBLEMS | {("deconvolution", t) for t in ("tik1e-3", "tik1e-2", "tik1e-1")}
    assert set(f1.frame["arch"]) == ARCHS and set(f1.frame["image"]) == {0}
    f3 = chosen["fig3_emmse"]
    assert {(d, t) for d, t, _ in f3.facet_values()} == {("ffhq", "deconvolution"), ("ffhq", "inpainting")}
    assert set(f3.frame["preinverse"]) == {"identity", "pinv"} and set(f3.frame["train_size"]) == {1000}
    assert len({s for *_, s in f3.facet_values()}) == 3  # three σ spread over the authors' grid
    f2 = chosen["fig2_memorisation"]
    assert f2.fixed == {"patch": 5}
    assert facets(f2, "dataset", "task") == {("ffhq", "denoising"), ("ffhq", "deconvolution")}
    assert set(f2.extra["images"]["train_size"]) == {1000}


def test_figure_rules_read_only_their_stores(paper):
    *_, chosen = paper
    for name in ("fig5_psnr_vs_sigma", "table2_architectures", "fig6_alignment_vs_density", "fig8_smoothed",
                 "fig17_patch_density", "fig18_19_patch_size", "fig25_ood_psnr", "fig26_dataset_size"):
        assert chosen[name].stores == [], name
    mass = chosen["fig20_22_mass"].stores
    assert all(k[0] == "analytic" and k[5] == "lemmse" and k[6:] == (5, 10000) for k in mass)


# ---------------------------------------------------------------------------------------- covered ⇒ renders
def _tiny_stores(root: Path, keys: set[tuple], sigmas: list[float]) -> None:
    """Tiny (8×8 digits) stores for the store keys the figures read, under ``root`` (stand-in values: the
    estimator stores' ``by`` and ``nearest_train_index`` random)."""
    import xarray as xr

    from lemmse.data import build_measurements, load_clean, prepare_dataset
    from lemmse.store import save_dataset

    layout = StoreLayout(root)
    coords = {"split": ["train", "test"], "image": np.arange(2), "sigma": np.asarray(sigmas)}
    dims = ("split", "image", "sigma", "c", "h", "w")
    rng = np.random.default_rng(0)
    keys = {k for k in keys if k[0] != "memorisation"}  # a table (figure_fixtures.memorisation_table), not a store
    datasets = {k[1] for k in keys if k[0] in ("data", "measurements")} | {k[2] for k in keys if k[0] != "data"
                                                                           and k[0] != "measurements"}
    for ds in datasets:
        if not layout.data(ds).exists():
            prepare_dataset("digits", layout.data(ds), resolution=8, train_size=1000, test_size=5)  # Fig. 2: N = 1000
    meas = {}
    for k in keys:
        ev, task = (k[1], k[2]) if k[0] == "measurements" else ((k[2], k[3]) if k[0] != "data" else (None, None))
        if ev is None or (ev, task) in meas:
            continue
        path = layout.measurements(ev, task)
        if not path.exists():
            build_measurements(path, layout.data(ev), task=task, sigmas=sigmas, n_eval=2)
        meas[ev, task] = {s: load_clean(path, s) for s in ("train", "test")}
    for k in keys:
        if k[0] not in ("analytic", "network"):
            continue
        clean = meas[k[2], k[3]]
        cube = np.stack([np.stack([clean[s]] * len(sigmas), axis=1) for s in ("train", "test")])
        ds_ = xr.Dataset({"xhat": (dims, np.clip(cube + 0.05 * rng.standard_normal(cube.shape), 0, 1).astype(np.float32))},
                         coords=coords)
        if k[0] == "analytic":
            _, d, ev, task, pre, est, p, n = k
            ds_["by"] = (dims, np.clip(cube + 0.1 * rng.standard_normal(cube.shape), 0, 1).astype(np.float32))
            ds_["nearest_train_index"] = (dims[:3], rng.integers(0, min(n, 1000), cube.shape[:3]).astype(np.float64))
            maps = dims[:3] + ("h", "w")
            ds_["mass99"] = (maps, rng.integers(1, 50, cube.shape[:3] + (8, 8)).astype(np.float32))
            ds_["source"] = (maps, rng.integers(-1, 20, cube.shape[:3] + (8, 8)).astype(np.float32))
            ds_["distinct_sources"] = (dims[:3], rng.integers(0, 20, cube.shape[:3]).astype(np.float64))
            path = layout.analytic(d, task, pre, est, p, n, ev)
        else:
            _, d, ev, task, pre, arch, p, n = k
            path = layout.network(d, task, pre, arch, p, n, ev, sigma_spec="0-1")
        if not path.exists():
            save_dataset(ds_, path)


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                               HealthCheck.too_slow])
@given(data=st.data())
def test_covered_figures_render_on_random_subsets(paper, tmp_path_factory, data):
    plan, _, metrics, analytic, _ = paper
    rng_seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(rng_seed)
    # a random subset of the sweep: some data sets, problems, σ and images dropped
    datasets = sorted(set(metrics["dataset"]) | set(analytic["dataset"]))
    keep_ds = set(rng.choice(datasets, size=rng.integers(1, 3), replace=False))
    sigmas = sorted(set(metrics["sigma"]))
    keep_sig = set(rng.choice(sigmas, size=rng.integers(1, 4), replace=False).tolist())

    def subset(df):
        out = df[df["dataset"].isin(keep_ds) & df["sigma"].isin(keep_sig)]
        return out[rng.random(len(out)) < 0.9] if len(out) > 50 else out

    m, a = subset(metrics), subset(analytic)
    root = tmp_path_factory.mktemp("paper")
    covered = {n: s for n, s in selections(m, a, config=plan.config).items() if isinstance(s, Selection)}
    keys = {k for s in covered.values() for k in s.stores}
    _tiny_stores(root, keys, sorted(keep_sig))
    inputs = FigureInputs(m, a, StoreLayout(root), plan.config["preinverses"], memorisation=memorisation_table(a))
    ref = Reference.from_config(plan.config)
    for name in covered:
        out = root / f"{name}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", message=".*[Tt]ight.*")
            make_figure(name, inputs, out, reference=ref)
        assert out.stat().st_size > 5_000, name
