"""Figures: each selection frame against hand-computed numbers on a small table; every figure renders
from fixture tables and stores to a sensible PNG without warnings; figures the tables do not cover fail
with a clear LemmseInputError; the reference slice comes from the config, never from max(N); importing
the registry does not import matplotlib."""
from __future__ import annotations

import dataclasses
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from figure_fixtures import DATASET, analytic_table, build_stores, memorisation_table, metrics_table
from lemmse.errors import LemmseInputError
from lemmse.figures import FIGURES, FigureInputs, Reference, StoreLayout, covered_figures, make_figure, write_captions
from lemmse.figures.select import select
from lemmse.figures.variance import compute_variance
from lemmse.tables import ANALYTIC_KEYS, ANALYTIC_VALUES, METRICS_KEYS, METRICS_VALUES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]
#: The fixture world's reference slice (its tables hold P ∈ {3, 5} and N ∈ {5, 10}).
REF = Reference(patch=3, train_size=10, memorisation_patch=3, memorisation_train_size=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> FigureInputs:
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    build_stores(root, rng)
    for task in ("inpainting", "deconvolution"):
        compute_variance(root / "variance" / DATASET / f"{task}.zarr", root / "data" / f"{DATASET}.zarr",
                         task=task, sigma=0.1, draws=3, patch=3, train_size=10, n_images=1)
    analytic = analytic_table(rng)
    return FigureInputs(metrics_table(rng), analytic, StoreLayout(root), memorisation=memorisation_table(analytic))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# ------------------------------------------------------------------------------ hand-computed selections
def _metrics(rows: list[dict]) -> pd.DataFrame:
    base = dict(dataset="d", eval_dataset="d", task="denoising", preinverse="identity", arch="unet", patch=3,
                train_size=10, train_sigma="0-1", estimator="lemmse", smoothing=0.0, split="test", image=0, sigma=0.1,
                **{v: np.nan for v in METRICS_VALUES})
    return pd.DataFrame([{**base, **r} for r in rows], columns=[*METRICS_KEYS, *METRICS_VALUES])


def _analytic(rows: list[dict]) -> pd.DataFrame:
    base = dict(dataset="d", eval_dataset="d", task="denoising", preinverse="identity", estimator="lemmse",
                smoothing=0.0, patch=3, train_size=10, split="test", image=0, sigma=0.1,
                **{v: np.nan for v in ANALYTIC_VALUES})
    return pd.DataFrame([{**base, **r} for r in rows], columns=[*ANALYTIC_KEYS, *ANALYTIC_VALUES])


def _inputs(metrics=None, analytic=None) -> FigureInputs:
    return FigureInputs(_metrics([]) if metrics is None else metrics, _analytic([]) if analytic is None else analytic,
                        StoreLayout(Path(".")))


def test_fig5_frame_is_mean_and_std_over_images_at_the_reference_slice():
    rows = []
    for n, p, image, value in [(10, 3, 0, 20.0), (10, 3, 1, 24.0), (50, 3, 0, 99.0), (10, 5, 0, 77.0)]:
        rows.append(dict(train_size=n, patch=p, image=image, psnr_net_est=value, psnr_net_truth=value - 1,
                         psnr_est_truth=value - 2))
    sel = select("fig5_psnr_vs_sigma", _inputs(_metrics(rows)), Reference(patch=3, train_size=10))
    assert sel.fixed == {"patch": 3, "train_size": 10}
    agree = sel.frame[sel.frame.quantity == "psnr_net_est"]
    assert len(agree) == 1
    assert agree["mean"].iloc[0] == pytest.approx(22.0)  # (20 + 24) / 2, N = 50 and P = 5 left out
    assert agree["std"].iloc[0] == pytest.approx(np.sqrt(8.0))  # ddof 1: ((2² + 2²) / 1)^½
    assert agree["count"].iloc[0] == 2
    assert sel.frame[sel.frame.quantity == "psnr_est_truth"]["mean"].iloc[0] == pytest.approx(20.0)


def test_fig5_draws_fixed_sigma_networks_as_points_beside_the_curves(tmp_path):
    """A study's fixed-σ networks leave the curves (the σ-conditioned network's) alone and come back as
    ``extra["fixed_sigma"]``: their PSNRs at their own σ, in the panel of their data set, arch and problem."""
    rows = []
    for sigma, value in ((0.1, 20.0), (0.5, 30.0)):
        rows.append(dict(sigma=sigma, psnr_net_est=value, psnr_net_truth=value, psnr_est_truth=value,
                         train_sigma="0-1", train_sigma_min=0.0, train_sigma_max=1.0))
    for image, value in ((0, 40.0), (1, 44.0)):
        rows.append(dict(sigma=0.5, image=image, psnr_net_est=value, psnr_net_truth=value - 10, psnr_est_truth=1.0,
                         train_sigma="0.5", train_sigma_min=0.5, train_sigma_max=0.5))
    rows.append(dict(sigma=0.5, patch=5, psnr_net_est=99.0, train_sigma="0.5", train_sigma_min=0.5, train_sigma_max=0.5))
    metrics = _metrics(rows).assign(train_sigma_min=[r.get("train_sigma_min") for r in rows],
                                    train_sigma_max=[r.get("train_sigma_max") for r in rows])
    inputs = _inputs(metrics)
    assert set(inputs.metrics["train_sigma"]) == {"0-1"} and set(inputs.fixed_sigma["train_sigma"]) == {"0.5"}
    sel = select("fig5_psnr_vs_sigma", inputs, Reference(patch=3, train_size=10))
    curve = sel.frame[sel.frame.quantity == "psnr_net_est"]
    assert curve["mean"].tolist() == [20.0, 30.0]  # the fixed network's rows stay out of the curve
    points = sel.extra["fixed_sigma"]
    agree = points[points.quantity == "psnr_net_est"]
    assert agree[["sigma", "train_sigma", "mean", "count"]].values.tolist() == [[0.5, "0.5", 42.0, 2]]  # P = 5 left out
    assert points[points.quantity == "psnr_net_truth"]["mean"].tolist() == [32.0]
    make_figure("fig5_psnr_vs_sigma", inputs, tmp_path / "fig5.png", reference=Reference(patch=3, train_size=10))
    assert png_size(tmp_path / "fig5.png")[0] > 0


def test_reference_comes_from_the_config_never_from_max_n():
    rows = [dict(train_size=n, psnr_net_est=float(n)) for n in (100, 1000, 50000)]
    inputs = _inputs(_metrics(rows))
    with pytest.raises(LemmseInputError, match=r"figures\.reference\.train_size"):
        select("fig5_psnr_vs_sigma", inputs, Reference(patch=3))
    sel = select("fig5_psnr_vs_sigma", inputs, Reference(patch=3, train_size=1000))
    assert sel.frame[sel.frame.quantity == "psnr_net_est"]["mean"].tolist() == [1000.0]
    with pytest.raises(LemmseInputError, match="no rows at the reference train_size = 7"):
        select("fig5_psnr_vs_sigma", inputs, Reference(patch=3, train_size=7))
    config = {"studies": {"noise": {"patches": [7, 9], "train_sizes": [1000, 5]}},
              "figures": {"reference": {"study": "noise", "patch": None, "train_size": None}},
              "memorisation": {"patch": 5, "train_size": 100}}
    assert Reference.from_config(config) == Reference(7, 1000, 5, 100, "study 'noise'")
    config["figures"]["reference"]["train_size"] = 5
    assert Reference.from_config(config).train_size == 5
    # the reference data set: the study's first unless figures.reference.dataset names one
    config["studies"]["noise"]["datasets"] = ["ffhq", "cifar10"]
    assert Reference.from_config(config).dataset == "ffhq"
    config["figures"]["reference"]["dataset"] = "cifar10"
    assert Reference.from_config(config).dataset == "cifar10"


def test_fig1_is_the_gallery_of_the_reference_slice():
    rows = [dict(task=t, preinverse=p, arch=a, image=i, sigma=g, psnr_net_est=100 * i + 10 * g + len(a))
            for t, p in (("denoising", "identity"), ("deconvolution", "pinv")) for a in ("resnet", "unet")
            for i in (0, 1) for g in (0.01, 0.1, 1.0)]
    rows += [dict(dataset="other", eval_dataset="other", psnr_net_est=-1.0), dict(patch=5, psnr_net_est=-2.0),  # off the reference slice
             dict(train_size=99, psnr_net_est=-3.0), dict(split="train", psnr_net_est=-4.0),
             dict(estimator="smoothed", smoothing=0.1, psnr_net_est=-5.0)]
    inputs = _inputs(_metrics(rows))
    sel = select("fig1_overview", inputs, Reference(patch=3, train_size=10, dataset="d"))
    assert sel.fixed == {"dataset": "d", "patch": 3, "train_size": 10, "sigma": 0.1, "split": "test"}
    assert sel.facet_values() == [("denoising", "identity"), ("deconvolution", "pinv")]  # the paper's task order
    assert sel.frame["arch"].tolist() == ["unet", "resnet"] * 2
    # the first test image at the middle σ: 100·0 + 10·0.1 + len(arch)
    assert sel.frame["psnr_net_est"].tolist() == pytest.approx([5.0, 7.0, 5.0, 7.0])
    assert set(sel.frame["image"]) == {0}
    assert ("network", "d", "d", "deconvolution", "pinv", "unet", 3, 10) in sel.stores
    assert ("analytic", "d", "d", "denoising", "identity", "lemmse", 3, 10) in sel.stores
    assert not any(k[1] == "other" for k in sel.stores)
    # the same rows as the gallery's block of that data set and P (a shared helper, not a copy)
    gallery = select("fig13_gallery", inputs, Reference(train_size=10)).frame
    block = gallery[(gallery.dataset == "d") & (gallery.patch == 3) & (gallery.split == "test")]
    assert block["psnr_net_est"].tolist() == sel.frame["psnr_net_est"].tolist()
    with pytest.raises(LemmseInputError, match=r"figures\.reference\.dataset"):
        select("fig1_overview", inputs, Reference(patch=3, train_size=10))  # two data sets, none configured
    with pytest.raises(LemmseInputError, match="no rows of the reference data set 'x'"):
        select("fig1_overview", inputs, Reference(patch=3, train_size=10, dataset="x"))


def _emmse_rows(tasks=("deconvolution", "inpainting"), pres=("identity", "pinv")):
    return [dict(estimator="emmse", patch=0, task=t, preinverse=p, image=i, sigma=g,
                 psnr_est_truth=10 * g + i + (0.5 if p == "pinv" else 0.0))
            for t in tasks for p in pres for i in (0, 1) for g in (0.01, 0.05, 0.1, 0.5, 1.0)]


def test_fig3_pairs_the_emmse_under_both_preinverses():
    rows = _emmse_rows()
    rows += [dict(estimator="emmse", patch=0, task="deconvolution", preinverse="tik1e-2", psnr_est_truth=-1.0),
             dict(estimator="emmse", patch=0, task="denoising", psnr_est_truth=-2.0),
             dict(estimator="emmse", patch=0, task="inpainting", train_size=99, psnr_est_truth=-3.0),
             dict(estimator="lemmse", task="inpainting", preinverse="pinv", psnr_est_truth=-4.0)]
    inputs = FigureInputs(_metrics([]), _analytic(rows), StoreLayout(Path(".")),
                          {"identity": {"kind": "identity"}, "pinv": {"kind": "pinv"},
                           "tik1e-2": {"kind": "tikhonov", "lam": 0.01}})
    sel = select("fig3_emmse", inputs, Reference(memorisation_train_size=10))
    # deconvolution (they coincide) first, then inpainting; three σ spread over the grid
    assert sel.facet_values() == [("d", t, g) for t in ("deconvolution", "inpainting") for g in (0.01, 0.1, 1.0)]
    assert sel.frame["kind"].tolist() == ["identity", "pinv"] * 6
    assert set(sel.frame["preinverse"]) == {"identity", "pinv"} and set(sel.frame["train_size"]) == {10}
    assert set(sel.frame["image"]) == {0} and sel.fixed == {"split": "test"}
    assert sel.frame["psnr_est_truth"].tolist() == pytest.approx([0.1, 0.6, 1.0, 1.5, 10.0, 10.5] * 2)
    assert set(sel.stores) == {("analytic", "d", "d", t, p, "emmse", 0, 10) for t in ("deconvolution", "inpainting")
                               for p in ("identity", "pinv")} | {("measurements", "d", "deconvolution"),
                                                                 ("measurements", "d", "inpainting"), ("data", "d"),
                                                                 ("memorisation",)}
    assert sel.frame["nearest_index"].isna().all()  # no memorisation table: planned, not drawable
    # the nearest shifted training image of each output comes from the memorisation table, never a search
    memo = sel.frame[["dataset", "task", "preinverse", "train_size", "split", "image", "sigma"]].assign(
        estimator="emmse", distance=np.arange(12) / 100, nearest_index=np.arange(12), nearest_shift_h=1,
        nearest_shift_w=2)
    other = memo.assign(estimator="mmse", distance=9.0)  # another estimator's row: not read
    inputs.memorisation = pd.concat([memo, other])
    with_memo = select("fig3_emmse", inputs, Reference(memorisation_train_size=10))
    assert with_memo.frame["distance"].tolist() == pytest.approx(np.arange(12) / 100)
    assert with_memo.frame["nearest_index"].tolist() == list(range(12))
    inputs.memorisation = memo.iloc[1:]
    with pytest.raises(LemmseInputError, match=r"memorisation table has no E-MMSE row .* \(rerun the memorisation_table"):
        select("fig3_emmse", inputs, Reference(memorisation_train_size=10))
    # a task with one pre-inverse only is left out; none with both: not covered, naming the section
    sel = select("fig3_emmse", _inputs(analytic=_analytic(_emmse_rows() [:-10])), Reference())
    assert {t for _, t, _ in sel.facet_values()} == {"deconvolution"}
    with pytest.raises(LemmseInputError, match=r"both B = I and B = A⁺.*memorisation\.problems"):
        select("fig3_emmse", _inputs(analytic=_analytic(_emmse_rows(pres=("identity",)))), Reference())


def test_fig3_draws_only_the_sigmas_where_both_preinverses_hold_the_image():
    # image 0 of deconvolution lacks its B = A⁺ row at σ = 0.1 (a partial table): that σ is not a pair
    rows = [r for r in _emmse_rows() if not (r["task"] == "deconvolution" and r["preinverse"] == "pinv"
                                             and r["image"] == 0 and r["sigma"] == 0.1)]
    inputs = _inputs(analytic=_analytic(rows))
    sel = select("fig3_emmse", inputs, Reference())
    # deconvolution spreads its three σ over the four paired ones; inpainting keeps 0.01, 0.1, 1.0
    assert sel.facet_values() == ([("d", "deconvolution", g) for g in (0.01, 0.5, 1.0)]
                                  + [("d", "inpainting", g) for g in (0.01, 0.1, 1.0)])
    assert sel.frame["psnr_est_truth"].notna().all()
    assert sel.frame["kind"].tolist() == ["identity", "pinv"] * 6
    # the memorisation table of exactly those rows is enough to draw it
    memo = sel.frame[["dataset", "task", "preinverse", "train_size", "split", "image", "sigma"]].assign(
        estimator="emmse", distance=0.5, nearest_index=3, nearest_shift_h=0, nearest_shift_w=0)
    inputs.memorisation = memo
    assert select("fig3_emmse", inputs, Reference()).frame["nearest_index"].tolist() == [3] * 12


def test_fig17_keeps_only_problems_along_which_p_varies():
    rows = [dict(patch=p, image=i, neg_log_density_patch_paper=10.0 * p + i) for p in (3, 5) for i in (0, 1)]
    rows += [dict(task="inpainting", preinverse="pinv", patch=3, neg_log_density_patch_paper=1.0)]
    rows += [dict(patch=7, train_size=99, neg_log_density_patch_paper=1e6)]  # another N: not at the reference
    sel = select("fig17_patch_density", _inputs(analytic=_analytic(rows)), Reference(train_size=10))
    assert sel.facet_values() == [("d", "denoising", "identity")]
    assert sel.frame["patch"].tolist() == [3, 5]
    assert sel.frame["mean"].tolist() == pytest.approx([30.5, 50.5])


def test_fig26_and_fig18_19_frames():
    rows = [dict(train_size=n, image=i, psnr_net_est=n / 10 + i) for n in (10, 100) for i in (0, 1)]
    sel = select("fig26_dataset_size", _inputs(_metrics(rows)), Reference(patch=3))
    assert sel.frame["train_size"].tolist() == [10, 100]
    assert sel.frame["mean"].tolist() == pytest.approx([1.5, 10.5])
    m = [dict(patch=p, split=s, psnr_net_est=float(p)) for p in (3, 5) for s in ("train", "test")]
    a = [dict(patch=p, split=s, psnr_est_truth=p + (100.0 if s == "train" else 0.0)) for p in (3, 5)
         for s in ("train", "test")]
    sel = select("fig18_19_patch_size", _inputs(_metrics(m), _analytic(a)), Reference(train_size=10))
    fig19 = sel.frame[sel.frame.panel == "fig19"].set_index(["split", "patch"])["mean"]
    assert fig19.to_dict() == {("train", 3): 103.0, ("train", 5): 105.0, ("test", 3): 3.0, ("test", 5): 5.0}


def test_fig23_takes_the_largest_patch_per_problem_and_fig20_the_observed_mass():
    a = [dict(patch=p, sigma=s, distinct_sources=float(p), mass99_observed_mean=2.0 * p, mass99_observed_median=float(p))
         for p in (3, 5, 7) for s in (0.1, 0.5)]
    a += [dict(task="inpainting", preinverse="pinv", patch=3, sigma=0.1, distinct_sources=1.0)]
    sel = select("fig23_patchwork", _inputs(analytic=_analytic(a)), Reference(train_size=10))
    assert sel.frame.groupby(["task", "preinverse"])["patch"].unique().map(list).to_dict() == {
        ("denoising", "identity"): [7], ("inpainting", "pinv"): [3]}
    assert ("analytic", "d", "d", "denoising", "identity", "lemmse", 7, 10) in sel.stores
    # one data set: Fig. 24 (the others) is not covered, and says why
    with pytest.raises(LemmseInputError, match=r"no training data set besides the reference 'd'.*\['d'\]"):
        select("fig24_patchwork", _inputs(analytic=_analytic(a)), Reference(train_size=10, dataset="d"))
    with pytest.raises(LemmseInputError, match=r"figures\.reference\.dataset"):
        select("fig24_patchwork", _inputs(analytic=_analytic(a)), Reference(train_size=10))
    sel = select("fig20_22_mass", _inputs(analytic=_analytic(a)), Reference(patch=5, train_size=10))
    got = sel.frame.set_index(["statistic", "sigma"])["mean"].to_dict()
    assert got == {("mass99_observed_mean", 0.1): 10.0, ("mass99_observed_mean", 0.5): 10.0,
                   ("mass99_observed_median", 0.1): 5.0, ("mass99_observed_median", 0.5): 5.0}


def test_fig23_draws_the_reference_data_set_and_fig24_the_others():
    a = [dict(dataset=ds, eval_dataset=ds, patch=p, sigma=s, image=i, distinct_sources=float(p) + i + 10 * k)
         for k, ds in enumerate(("ffhq", "fashion_mnist", "cifar10")) for p in (3, 5) for s in (0.1, 0.5)
         for i in (0, 1)]
    a += [dict(dataset="ffhq", eval_dataset="cifar10", patch=9, distinct_sources=-1.0),  # OOD: no source maps drawn
          dict(dataset="mnist", patch=9, train_size=99, distinct_sources=-2.0),  # another N
          dict(dataset="svhn", patch=9, distinct_sources=np.nan)]  # no diagnostics in its store
    inputs = _inputs(analytic=_analytic(a))
    ref = Reference(train_size=10, dataset="ffhq")
    f23 = select("fig23_patchwork", inputs, ref)
    assert f23.facet_values() == [("ffhq", "denoising", "identity")]
    assert f23.frame["patch"].tolist() == [5, 5] and f23.frame["distinct_sources"].tolist() == [5.0, 5.0]
    f24 = select("fig24_patchwork", inputs, ref)
    assert f24.facet_values() == [("fashion_mnist", "denoising", "identity"), ("cifar10", "denoising", "identity")]
    assert f24.frame["distinct_sources"].tolist() == [15.0, 15.0, 25.0, 25.0]
    assert f24.fixed == {"train_size": 10} and {k[1] for k in f24.stores} == {"fashion_mnist", "cifar10"}
    assert ("analytic", "cifar10", "cifar10", "denoising", "identity", "lemmse", 5, 10) in f24.stores


def test_fig7_and_fig25_pair_ood_with_in_distribution():
    rows = [dict(eval_dataset=ev, sigma=s, psnr_net_est=(30.0 if ev == "d" else 20.0) + s)
            for ev in ("d", "other") for s in (0.1, 0.5)]
    rows += [dict(eval_dataset="d", arch="resnet", psnr_net_est=1.0)]  # no OOD evaluation: not drawn
    inputs = _inputs(_metrics(rows))
    f7 = select("fig7_ood", inputs, REF)
    assert f7.facet_values() == [("d", "other", "unet", 3, 10, "denoising", "identity")]
    assert f7.frame["psnr_net_est"].tolist() == pytest.approx([20.1, 20.5])
    assert ("network", "d", "other", "denoising", "identity", "unet", 3, 10) in f7.stores
    f25 = select("fig25_ood_psnr", inputs, REF)
    agree = f25.frame[f25.frame.quantity == "psnr_net_est"].set_index(["eval_dataset", "sigma"])["mean"]
    assert agree.to_dict() == pytest.approx({("d", 0.1): 30.1, ("d", 0.5): 30.5, ("other", 0.1): 20.1,
                                             ("other", 0.5): 20.5})
    with pytest.raises(LemmseInputError, match="out-of-distribution"):
        select("fig7_ood", _inputs(_metrics(rows[:2])), REF)


def test_fig2_panels_and_distances():
    a = [dict(estimator=e, patch=p, train_size=100, split=s, sigma=g, nearest_train_distance=d * g,
              truth_nearest_train_distance=0.3)
         for e, p, d in (("mmse", 0, 0.1), ("emmse", 0, 0.2), ("lemmse", 5, 1.0)) for s in ("train", "test")
         for g in (0.01, 0.1)]
    a += [dict(estimator="lemmse", patch=5, train_size=300, nearest_train_distance=9.0)]  # another N: not Fig. 2
    sel = select("fig2_memorisation", _inputs(analytic=_analytic(a)), Reference(memorisation_patch=5))
    panels = sel.extra["images"]
    assert panels["estimator"].tolist() == ["mmse", "emmse", "lemmse"]
    assert set(panels["split"]) == {"test"} and set(panels["train_size"]) == {100}
    # the image panels sit at the second of (up to) four σ spread over the grid: here σ = 0.1
    assert set(panels["sigma"]) == {0.1}
    assert panels["nearest_train_distance"].tolist() == pytest.approx([0.1 * 0.1, 0.1 * 0.2, 0.1 * 1.0])
    dist = sel.frame[(sel.frame.quantity == "nearest_train_distance") & (sel.frame.split == "test")]
    assert dist.set_index(["estimator", "sigma"])["mean"].to_dict() == pytest.approx(
        {("mmse", 0.01): 0.001, ("mmse", 0.1): 0.01, ("emmse", 0.01): 0.002, ("emmse", 0.1): 0.02,
         ("lemmse", 0.01): 0.01, ("lemmse", 0.1): 0.1})


# ------------------------------------------------------------------------------------------- rendering
#: Renders of 100+ panels (10-15 s each on the fixture's sweep): slow tier only; the fast tier still
#: draws every module's figures (curves through fig6, fig17, fig18_19, ...). Fig. 13 (5 s) and Fig. 5
#: (2 s) are slow here too: the fast tier draws them in full elsewhere (every panel of Fig. 13 in
#: test_gallery_b_y_is_the_estimator_stores_by, Fig. 5's PNG in test_cli_make_and_list and
#: test_fig5_draws_fixed_sigma_networks_as_points_beside_the_curves).
SLOW_RENDERS = ("fig8_smoothed", "fig9_other_datasets", "fig13_gallery", "fig5_psnr_vs_sigma")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_RENDERS else n
                                  for n in FIGURES])
def test_figure_renders(world, tmp_path, name):
    out = tmp_path / f"{name}.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Fig. 9 draws the data sets outside the reference slice: move the reference off the fixture's
        # Fig. 24 draws the data sets other than the reference: name another one as the reference
        ref = {"fig9_other_datasets": dataclasses.replace(REF, patch=99),
               "fig24_patchwork": dataclasses.replace(REF, dataset="faces")}.get(name, REF)
        make_figure(name, world, out, config_label="fixture config", reference=ref)
    width, height = png_size(out)
    assert width >= 400 and height >= 300, (width, height)
    assert out.stat().st_size > 10_000
    if name == "table2_architectures":
        assert out.with_suffix(".csv").is_file() and "| UNet |" in out.with_suffix(".md").read_text()


def _shown_panels(monkeypatch) -> list[tuple[str, np.ndarray]]:
    """Record every (title, image) a figure draws; forbid recomputing B y (it is read from the stores).
    The figure is closed unsaved: these tests read its panels, :func:`test_figure_renders` its PNG."""
    import matplotlib.pyplot as plt

    import lemmse.operators
    from lemmse.figures import style

    shown, draw = [], style.image_panel

    def recording(ax, img, title=None, **kw):
        shown.append((title, np.asarray(img)))
        return draw(ax, img, title, **kw)

    def no_preinvert(*args, **kw):
        raise AssertionError("a figure recomputed B y")

    monkeypatch.setattr(style, "image_panel", recording)
    monkeypatch.setattr(style, "save", lambda fig, *args, **kw: plt.close(fig))
    monkeypatch.setattr(lemmse.operators, "preinvert", no_preinvert)
    return shown


def test_gallery_b_y_is_the_estimator_stores_by(world, tmp_path, monkeypatch):
    """Figs. 13–16: each row's B y panel is the ``by`` its LE-MMSE store holds at the row's (split, image, σ)."""
    import xarray as xr

    from lemmse.figures.inputs import fix

    shown = _shown_panels(monkeypatch)
    make_figure("fig13_gallery", world, tmp_path / "f.png", reference=REF)
    sel = select("fig13_gallery", world, REF)
    rows = list(dict.fromkeys(sel.frame[["dataset", "patch", "task", "preinverse", "split"]].itertuples(
        index=False, name=None)))
    panels = [img for title, img in shown if title == "B y"]
    assert len(panels) == len(rows) > 0
    for (ds, p, task, pre, split), panel in zip(rows, panels):
        first = fix(sel.frame, dataset=ds, patch=p, task=task, preinverse=pre, split=split).iloc[0]
        store = xr.open_zarr(world.stores.analytic(ds, task, pre, "lemmse", p, int(first["train_size"]), ds))
        expected = store["by"].sel(split=split, image=int(first["image"]), sigma=sel.fixed["sigma"]).values
        np.testing.assert_array_equal(panel, expected)


def test_fig2_shows_the_training_image_the_mmse_store_names(world, tmp_path, monkeypatch):
    """Fig. 2's nearest training image is the data store's image at the MMSE store's ``nearest_train_index``."""
    import xarray as xr

    from lemmse.data import load_split

    shown = _shown_panels(monkeypatch)
    make_figure("fig2_memorisation", world, tmp_path / "f.png", reference=REF)
    panels = select("fig2_memorisation", world, REF).extra["images"]
    mmse = panels[panels["estimator"] == "mmse"]
    nearest = [(title, img) for title, img in shown if title.startswith("nearest training")]
    assert len(nearest) == len(mmse) > 0
    train = load_split(world.stores.data(DATASET), "train")
    for row, (title, img) in zip(mmse.itertuples(index=False), nearest):
        store = xr.open_zarr(world.stores.analytic(row.dataset, row.task, row.preinverse, "mmse", 0, row.train_size,
                                                   row.dataset))
        index = int(store["nearest_train_index"].sel(split=row.split, image=row.image, sigma=row.sigma))
        assert title.endswith(f"(#{index})")
        np.testing.assert_array_equal(img, train[index])


def test_variance_store_layout(world):
    import xarray as xr

    ds = xr.open_zarr(world.stores.variance(DATASET, "inpainting"))
    assert ds["variance"].dims == ("preinverse", "image", "h", "w")
    assert list(ds["preinverse"].values) == ["identity", "pinv"]
    assert ds["mean"].dims == ("preinverse", "image", "c", "h", "w")
    assert (ds["variance"].values >= 0).all() and ds.attrs["draws"] == 3
    # A⁺ removes the noise inside the hole: lower variance there than with B = I
    assert float(ds["variance"].sel(preinverse="pinv").mean()) < float(ds["variance"].sel(preinverse="identity").mean())


def test_covered_figures_follow_the_tables(world):
    m, a = world.metrics, world.analytic
    # every figure but Fig. 9 and 24, whose data sets lie outside the reference slice (the fixture has one data set)
    assert set(covered_figures(m, a, variance=True, reference=dataclasses.replace(REF, dataset=DATASET))) == (
        set(FIGURES) - {"fig9_other_datasets", "fig24_patchwork"})
    assert "fig9_other_datasets" in covered_figures(m, a, reference=dataclasses.replace(REF, patch=7))
    assert "fig24_patchwork" in covered_figures(m, a, reference=dataclasses.replace(REF, dataset="faces"))
    in_dist = m[(m.eval_dataset == m.dataset) & (m.estimator == "lemmse") & (m.patch == 3) & (m.train_size == 10)]
    got = covered_figures(in_dist, a[a.estimator == "lemmse"], reference=REF)
    for name in ("fig7_ood", "fig25_ood_psnr", "fig8_smoothed", "fig26_dataset_size", "fig18_19_patch_size",
                 "fig2_memorisation", "fig3_emmse", "fig4_preinverse_variance"):
        assert name not in got
    assert {"fig1_overview", "fig5_psnr_vs_sigma", "fig17_patch_density", "fig23_patchwork"} <= set(got)
    # values do not matter: planned keys with NaN values give the same answer
    planned = m.copy()
    planned.loc[:, "psnr_net_truth":] = np.nan
    planned_a = a.copy()
    planned_a.loc[:, "psnr_est_truth":] = np.nan
    assert covered_figures(planned, planned_a, reference=REF) == covered_figures(m, a, reference=REF)


def test_uncovered_figure_names_what_is_missing(world, tmp_path):
    m = world.metrics
    inputs = FigureInputs(m[m.eval_dataset == m.dataset], world.analytic, world.stores)
    with pytest.raises(LemmseInputError, match="out-of-distribution"):
        make_figure("fig7_ood", inputs, tmp_path / "x.png", reference=REF)
    with pytest.raises(LemmseInputError, match=r"patch = \[3, 5\].*figures\.reference\.patch"):
        make_figure("fig5_psnr_vs_sigma", inputs, tmp_path / "x.png")  # no reference: two P in the tables
    inputs = FigureInputs(m, world.analytic, world.stores, variance_stores={})
    with pytest.raises(LemmseInputError, match="variance"):
        make_figure("fig4_preinverse_variance", inputs, tmp_path / "x.png")
    with pytest.raises(LemmseInputError, match="unknown figure"):
        make_figure("fig99", inputs, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_caption_files_match_registry(tmp_path):
    paths = write_captions(tmp_path)
    assert len(paths) == len(FIGURES)
    for name, figure in FIGURES.items():
        assert (REPO / "workflow" / "report" / f"{name}.rst").read_text().strip() == figure.caption.strip(), (
            f"regenerate workflow/report/{name}.rst")


def test_registry_and_dag_helpers_do_not_import_matplotlib():
    code = ("import sys, lemmse.figures, lemmse.figures.select, lemmse.gather, lemmse.plan; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_cli_make_and_list(world, tmp_path, capsys):
    from lemmse.cli.main import main

    tables = tmp_path / "tables"
    tables.mkdir()
    world.metrics.to_parquet(tables / "metrics.parquet")
    world.analytic.to_csv(tables / "analytic.csv", index=False)
    config = tmp_path / "config.yaml"
    config.write_text("preinverses:\n  identity: {kind: identity}\n  pinv: {kind: pinv}\n"
                      "figures: {reference: {patch: 3, train_size: 10}}\n")
    out = tmp_path / "fig5.png"
    assert main(["figures", "make", "fig5_psnr_vs_sigma", "--tables", str(tables), "--results",
                 str(world.stores.results), "--out", str(out), "--config", str(config)]) == 0
    assert png_size(out)[0] >= 400
    assert main(["figures", "list", "--tables", str(tables), "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "fig7_ood\tcovered" in listing and "fig5_psnr_vs_sigma\tcovered" in listing
    assert main(["figures", "list", "--tables", str(tables)]) == 0
    assert "fig5_psnr_vs_sigma\tnot covered" in capsys.readouterr().out  # no reference: two P, two N
    assert main(["figures", "make", "nope", "--tables", str(tables), "--results", ".", "--out", "x.png"]) == 2
    assert "unknown figure" in capsys.readouterr().err


def test_config_reference_is_validated():
    import yaml

    from lemmse.plan.config import load_config

    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert load_config(raw)["figures"]["reference"] == {"study": "noise", "dataset": None, "patch": None,
                                                        "train_size": None}
    raw["figures"] = {"reference": {"dataset": "mnist"}}
    with pytest.raises(LemmseInputError, match=r"figures\.reference\.dataset: data set 'mnist' is not configured"):
        load_config(raw)
    raw["figures"] = {"reference": {"patch": 4}}
    with pytest.raises(LemmseInputError, match=r"figures\.reference\.patch: patch size 4 must be odd"):
        load_config(raw)
    raw["figures"] = {"reference": {"sample": 3}}
    with pytest.raises(LemmseInputError, match=r"figures\.reference"):
        load_config(raw)
