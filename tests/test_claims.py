"""Every claim on tables built so that its statistic is known: just above and just below its
threshold (value asserted), unchanged — value and interval — when unmatched cells are added, and
"not covered" with its reason when its data are absent."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from claims_fixtures import (EMPTY_A, EMPTY_M, OFFSETS, SETTINGS, analytic, estimator_pairs, memorisation, metrics,
                             netpairs, run)
from lemmse.claims import CLAIMS, FAILS, HOLDS, NOT_COVERED, Settings, compute_claims, write_claims

TWO_SPLITS = ("train", "test")
EPS = 0.1


@dataclass(frozen=True)
class Case:
    build: Callable[[float], dict]        # δ -> compute_claims inputs
    value: Callable[[float], float]       # δ -> the statistic's exact value
    holds: Callable[[float], bool]        # δ -> expected verdict
    unmatched: Callable[[], dict]         # rows that must change nothing (merged into the inputs)


def _merge(kwargs: dict, extra: dict) -> dict:
    out = dict(kwargs)
    for key, frame in extra.items():
        out[key] = pd.concat([kwargs[key], frame], ignore_index=True) if key in kwargs else frame
    return out


# ------------------------------------------------------------------------------------------- cases
def _agreement(d):
    return dict(metrics_table=metrics(lambda arch, sigma, split, **k: {
        "psnr_net_est": 25 + d if (arch, sigma, split) == ("resnet", 1.0, "test") else 30.0},
        arch=("unet", "resnet"), split=TWO_SPLITS))


def _agreement_unmatched():
    # the smoothed estimator, another evaluation data set: neither is network vs LE-MMSE in distribution
    low = {"psnr_net_est": 5.0}
    return dict(metrics_table=pd.concat([metrics(lambda **k: low, estimator=("smoothed",), smoothing=(0.1,)),
                                         metrics(lambda **k: low, eval_dataset=("o",))]))


def _often(d):
    # 6 cells (3 σ × 2 splits): 2 at 30 + d, 4 at 27 -> share above 30 dB = 2/6 when d > 0
    return dict(metrics_table=metrics(lambda sigma, split, **k: {
        "psnr_net_est": 30 + d if sigma < 0.05 else 27.0}, split=TWO_SPLITS))


def _gap(d):
    # train − test: 2 at σ = 0.01, 1 at 0.1, 2 − d at 1: min(g_first, g_first − g_last) = d
    g = {0.01: 2.0, 0.1: 1.0, 1.0: 2.0 - d}
    return dict(metrics_table=metrics(lambda sigma, split, **k: {
        "psnr_net_est": 30.0 + (g[sigma] if split == "train" else 0.0)}, split=TWO_SPLITS))


def _density(d):
    # per image density rises with the image index; PSNR falls with it (ρ = −1) in every cell except
    # those at σ = 1 when d < 0 (ρ = +1 there, 1 of 3 cells) ... median ρ over 3 cells
    rows = metrics(lambda **k: {"psnr_net_est": 30.0}, split=TWO_SPLITS)
    sign = np.where((rows["sigma"] >= (0.1 if d < 0 else 2.0)), 1.0, -1.0)
    rows["neg_log_density_patch_paper"] = rows["image"] + 10 * (rows["split"] == "test")
    rows["neg_log_density_patch_normalised"] = -rows["neg_log_density_patch_paper"]  # opposite: must be ignored
    rows["psnr_net_est"] = 30.0 + sign * rows["neg_log_density_patch_paper"]
    return dict(metrics_table=rows)


def _small_patch(d):
    # at the smallest σ (test): P=3 minus P=7 = d; at larger σ a large negative difference (not compared)
    return dict(metrics_table=metrics(lambda patch, sigma, **k: {
        "psnr_net_est": 30.0 + (d if patch == 3 else 0.0) if sigma == 0.01 else 30.0 - (5.0 if patch == 3 else 0.0)},
        patch=(3, 7)))


def _density_patch(d):
    # −log p at P = 7 minus at P = 3: d in the (σ = 1, train) cell, 5 elsewhere
    return dict(analytic_table=analytic(lambda patch, sigma, split, **k: {
        "neg_log_density_patch_paper": (d if (sigma, split) == (1.0, "train") else 5.0) if patch == 7 else 0.0,
        "neg_log_density_patch_normalised": -1.0 * patch}, jitter=("neg_log_density_patch_paper",),
        patch=(3, 7), split=TWO_SPLITS))


def _patch_sigma(d):
    # best P at σ = 0.01 is 3; at σ = 1, P = 7 leads by d (best P = 7 if d > 0, else 3)
    def fill(patch, sigma, **k):
        if sigma == 1.0:
            return {"psnr_est_truth": 20.0 + (d if patch == 7 else 0.0)}
        return {"psnr_est_truth": 30.0 - patch}
    return dict(analytic_table=analytic(fill, patch=(3, 7)))


def _patch_sigma_unmatched():
    # train split (reversed trend) and a task with a single P: not compared
    return dict(analytic_table=pd.concat([
        analytic(lambda patch, sigma, **k: {"psnr_est_truth": 20.0 + patch * (1 if sigma < 0.5 else -1)},
                 patch=(3, 7), split=("train",)),
        analytic(lambda sigma, **k: {"psnr_est_truth": 1.0}, task=("inpainting",), patch=(9,))]))


def _blowup(d):
    # train − test PSNR(LE-MMSE, truth) at σ = 0.01: 10 + d; 0 elsewhere
    return dict(analytic_table=analytic(lambda sigma, split, **k: {
        "psnr_est_truth": 30.0 + (10.0 + d if (split == "train" and sigma == 0.01) else 0.0)}, split=TWO_SPLITS))


def _mass(values):
    return lambda sigma, **k: {"mass99_observed_mean": values[sigma]}


def _mass_few(d):
    return dict(analytic_table=analytic(_mass({0.01: 10.0 + d, 0.1: 50.0, 1.0: 5000.0}),
                                        jitter=("mass99_observed_mean",)))


def _mass_grows(d):
    return dict(analytic_table=analytic(_mass({0.01: 2.0, 0.1: 3.0, 1.0: 2.0 * (10.0 + d)}), jitter=()))


def _critical(d):
    # log10 mass: 0, 0, 2 + d  over log10 σ: −2, −1, 0  -> steepest slope 2 + d
    return dict(analytic_table=analytic(_mass({0.01: 1.0, 0.1: 1.0, 1.0: 10 ** (2.0 + d)}), jitter=()))


def _pinv_mass(d):
    # deconvolution: mass with A⁺ over mass with I = 2 + d at every σ (median over σ = 2 + d)
    return dict(analytic_table=analytic(lambda preinverse, sigma, **k: {
        "mass99_observed_mean": 7.0 * (2.0 + d if preinverse == "pinv" else 1.0)}, jitter=(),
        task=("deconvolution",), preinverse=("identity", "pinv")))


def _pinv_mass_unmatched():
    # inpainting with A⁺ (another task) and a Tikhonov label (another kind)
    return dict(analytic_table=pd.concat([
        analytic(lambda preinverse, **k: {"mass99_observed_mean": 1e6 if preinverse == "pinv" else 1.0}, jitter=(),
                 task=("inpainting",), preinverse=("identity", "pinv")),
        analytic(lambda **k: {"mass99_observed_mean": 1e-6}, jitter=(), task=("deconvolution",),
                 preinverse=("tik1e-2",))]))


def _patchwork(d):
    level = {0.01: 8.0, 0.1: 6.0, 1.0: 8.0 + d}
    return dict(analytic_table=analytic(lambda sigma, **k: {"distinct_sources": level[sigma]},
                                        jitter=("distinct_sources",)))


def _smoothing(column):
    def build(d):
        rows = metrics(lambda estimator, smoothing, **k: {
            column: 30.0 + ({0.1: 1.0, 0.2: d}.get(smoothing, 0.0) if estimator == "smoothed" else 0.0)},
            estimator=("lemmse", "smoothed"), smoothing=(0.0, 0.1, 0.2))
        # the plain LE-MMSE has smoothing 0; smoothed rows with s = 0 do not exist
        rows = rows[(rows["estimator"] == "lemmse") == (rows["smoothing"] == 0.0)]
        if column == "psnr_est_truth":
            rows["psnr_est_truth"] = rows["psnr_est_truth"] + rows["image"].map(dict(enumerate((-1, -.5, .5, 1))))
        return dict(metrics_table=rows.reset_index(drop=True))
    return build


def _smoothing_unmatched():
    # smoothed rows with no plain partner (another architecture) and an OOD pair with a large loss
    return dict(metrics_table=pd.concat([
        metrics(lambda **k: {"psnr_net_est": 0.0, "psnr_est_truth": 0.0}, arch=("resnet",), estimator=("smoothed",),
                smoothing=(0.1,)),
        metrics(lambda estimator, **k: {"psnr_net_est": 30.0 - 20 * (estimator == "smoothed"),
                                        "psnr_est_truth": 30.0 - 20 * (estimator == "smoothed")},
                eval_dataset=("o",), estimator=("smoothed",), smoothing=(0.1,)),
        metrics(lambda **k: {"psnr_net_est": 30.0, "psnr_est_truth": 30.0}, eval_dataset=("o",))]))


def _memo(estimator, ratio_at_small):
    def build(d):
        r = ratio_at_small(d)
        return dict(memorisation=memorisation(lambda sigma, **k: {
            "distance": 0.2 * (r if sigma == 0.01 else 5.0), "distance_unshifted": 1.0, "truth_distance": 0.2},
            estimator=(estimator,)))
    return build


def _memo_unmatched():
    # train images and another estimator
    return dict(memorisation=pd.concat([
        memorisation(lambda **k: {"distance": 9.0, "distance_unshifted": 9.0, "truth_distance": 0.1},
                     estimator=("mmse", "emmse", "lemmse"), split=("train",)),
        memorisation(lambda **k: {"distance": 9.0, "distance_unshifted": 9.0, "truth_distance": 0.1},
                     estimator=("smoothed",))]))


#: the pooled PSNR of a cell (PSNR of the mean MSE) sits this far below its per-image PSNRs' centre
POOL_SHIFT = -10 * np.log10(np.mean(10 ** (-np.asarray(OFFSETS) / 10)))


def _emmse(task, level):
    # as on real stores: bit-identical outputs (PSNR ∞) at the smallest σ, 60 dB at σ = 0.1, level + δ at σ = 1;
    # both Cor. 3.7 claims read the lowest cell
    cell = {0.01: np.inf, 0.1: 60.0, 1.0: level}

    def build(d):
        return dict(estimator_pairs=estimator_pairs(
            lambda sigma, **k: {"psnr": cell[sigma] - POOL_SHIFT + (d if sigma == 1.0 else 0.0)}, task=(task,),
            estimator=("emmse",)))
    return build


def _emmse_unmatched():
    return dict(estimator_pairs=pd.concat([
        estimator_pairs(lambda **k: {"psnr": 0.0}, task=("deconvolution", "inpainting"), estimator=("lemmse",)),
        estimator_pairs(lambda **k: {"psnr": 0.0}, task=("deconvolution",), estimator=("emmse",),
                        preinverse_b=("tik1e-2",))]))


def _arch(d):
    return dict(netpairs=netpairs(lambda sigma, split, **k: {"psnr": 25.0 + d if sigma == 1.0 else 31.0},
                                  split=TWO_SPLITS))


def _arch_unmatched():
    # the same pair of networks on out-of-distribution measurements: not the claim's comparison
    return dict(netpairs=netpairs(lambda **k: {"psnr": 1.0}, eval_dataset=("o",), split=TWO_SPLITS))


def _size_limited(d):
    return dict(metrics_table=metrics(lambda train_size, sigma, **k: {
        "psnr_net_est": 30.0 + ((3.0 + d) if (train_size == 100 and sigma == 0.1) else 1.0) * (train_size == 100)},
        train_size=(10, 30, 100)))


def _size_improves(d):
    # N = 100 minus N = 10 per σ: (d, d, 5) -> median d
    return dict(metrics_table=metrics(lambda train_size, sigma, **k: {
        "psnr_net_est": 30.0 + (5.0 if sigma == 1.0 else d) * (train_size == 100)}, train_size=(10, 100)))


def _size_unmatched():
    return dict(metrics_table=pd.concat([metrics(lambda **k: {"psnr_net_est": 0.0}, arch=("resnet",), train_size=(7,)),
                                         metrics(lambda train_size, **k: {"psnr_net_est": train_size * 1.0},
                                                 estimator=("smoothed",), smoothing=(0.1,), train_size=(10, 100))]))


def _ood(d):
    # gap in − ood: 3 at σ = 0.01, 2 at 0.1, 3 − d at 1 -> min(3, 3 − (3 − d)) = d
    gap = {0.01: 3.0, 0.1: 2.0, 1.0: 3.0 - d}
    return dict(metrics_table=metrics(lambda eval_dataset, sigma, **k: {
        "psnr_net_est": 30.0 - (gap[sigma] if eval_dataset == "o" else 0.0)}, eval_dataset=("d", "o")))


def _ood_high(d):
    return dict(metrics_table=metrics(lambda eval_dataset, sigma, **k: {
        "psnr_net_est": (20.0 if sigma < 1 else 25.0 + d) if eval_dataset == "o" else 35.0},
        eval_dataset=("d", "o")))


def _ood_unmatched():
    # an OOD evaluation of a network with no in-distribution partner, and smoothed rows
    return dict(metrics_table=pd.concat([metrics(lambda **k: {"psnr_net_est": 0.0}, eval_dataset=("o",),
                                                 arch=("resnet",)),
                                         metrics(lambda **k: {"psnr_net_est": 0.0}, eval_dataset=("o",),
                                                 estimator=("smoothed",), smoothing=(0.1,))]))


def _ood_high_unmatched():
    # in-distribution rows of another network and smoothed OOD rows: not OOD agreement with the LE-MMSE
    return dict(metrics_table=pd.concat([metrics(lambda **k: {"psnr_net_est": 0.0}, arch=("resnet",)),
                                         metrics(lambda **k: {"psnr_net_est": 0.0}, eval_dataset=("o",),
                                                 estimator=("smoothed",), smoothing=(0.1,))]))


def _timing(d):
    rows = [("d", "d", "denoising", "identity", "", 5, 10, "formula", 1.0),
            ("d", "d", "denoising", "identity", "unet", 5, 10, "network", 1.0 / (10.0 + d)),
            ("d", "d", "denoising", "identity", "resnet", 5, 10, "network", 1.0 / (10.0 + d))]
    return dict(timings=pd.DataFrame(rows, columns=["dataset", "eval_dataset", "task", "preinverse", "arch", "patch",
                                                    "train_size", "what", "seconds_per_estimate"]))


def _timing_unmatched():
    rows = [("d", "d", "inpainting", "identity", "", 5, 10, "formula", 1e-9),  # not denoising
            ("d", "d", "inpainting", "identity", "unet", 5, 10, "network", 1.0),
            ("d", "d", "denoising", "identity", "", 7, 10, "formula", 1e-9)]  # no network at P = 7
    return dict(timings=pd.DataFrame(rows, columns=["dataset", "eval_dataset", "task", "preinverse", "arch", "patch",
                                                    "train_size", "what", "seconds_per_estimate"]))


def _lemmse_unmatched_analytic():
    # the MMSE and an OOD evaluation: not analytic LE-MMSE rows on their own data set
    return dict(analytic_table=pd.concat([
        analytic(lambda **k: {c: -1e3 for c in ("psnr_est_truth", "neg_log_density_patch_paper",
                                                "mass99_observed_mean", "distinct_sources")}, jitter=(),
                 estimator=("mmse",), patch=(0,), split=TWO_SPLITS),
        analytic(lambda **k: {c: 1e3 for c in ("psnr_est_truth", "neg_log_density_patch_paper",
                                               "mass99_observed_mean", "distinct_sources")}, jitter=(),
                 eval_dataset=("o",), patch=(3, 7), split=TWO_SPLITS)]))


def _mass_few_unmatched():
    # deconvolution with B = A⁺: its smallest σ is no low noise in B y (huge mass there)
    return dict(analytic_table=pd.concat([
        _lemmse_unmatched_analytic()["analytic_table"],
        analytic(_mass({0.01: 5000.0, 0.1: 6000.0, 1.0: 7000.0}), jitter=(), task=("deconvolution",),
                 preinverse=("pinv",))]))


def _blowup_unmatched():
    # problems whose B y cannot be copied at the smallest σ: inpainting's hole, deconvolution's A⁺
    # (train far *below* test, which would sink the statistic were they read)
    def fill(sigma, split, **k):
        return {"psnr_est_truth": 30.0 - (50.0 if (split == "train" and sigma == 0.01) else 0.0)}

    return dict(analytic_table=pd.concat([
        _lemmse_unmatched_analytic()["analytic_table"],
        analytic(fill, task=("inpainting",), preinverse=("identity", "pinv"), split=TWO_SPLITS),
        analytic(fill, task=("deconvolution",), preinverse=("pinv",), split=TWO_SPLITS)]))


CASES: dict[str, Case] = {
    "agreement": Case(_agreement, lambda d: 25 + d, lambda d: d > 0, _agreement_unmatched),
    "often_30": Case(_often, lambda d: 2 / 6 if d > 0 else 0.0, lambda d: d > 0, _agreement_unmatched),
    "train_test_gap": Case(_gap, lambda d: d, lambda d: d > 0, _agreement_unmatched),
    "density": Case(_density, lambda d: 1.0 if d < 0 else -1.0, lambda d: d > 0, _agreement_unmatched),
    "small_patches_agree": Case(_small_patch, lambda d: d, lambda d: d > 0, _agreement_unmatched),
    "density_vs_patch": Case(_density_patch, lambda d: d, lambda d: d > 0, _lemmse_unmatched_analytic),
    "patch_vs_sigma": Case(_patch_sigma, lambda d: 4.0 if d > 0 else 0.0, lambda d: d > 0, _patch_sigma_unmatched),
    "train_blowup": Case(_blowup, lambda d: 10 + d, lambda d: d >= 0, _blowup_unmatched),
    "mass_few": Case(_mass_few, lambda d: 10 + d, lambda d: d <= 0, _mass_few_unmatched),
    "mass_grows": Case(_mass_grows, lambda d: 10 + d, lambda d: d >= 0, _lemmse_unmatched_analytic),
    "critical_sigma": Case(_critical, lambda d: 2 + d, lambda d: d >= 0, _lemmse_unmatched_analytic),
    "deconvolution_pinv_mass": Case(_pinv_mass, lambda d: 2 + d, lambda d: d >= 0, _pinv_mass_unmatched),
    "patchwork_dissolves": Case(_patchwork, lambda d: d, lambda d: d < 0, _lemmse_unmatched_analytic),
    "smoothing_agreement": Case(_smoothing("psnr_net_est"), lambda d: min(1.0, d), lambda d: d > 0,
                                _smoothing_unmatched),
    "smoothing_reconstruction": Case(_smoothing("psnr_est_truth"), lambda d: min(1.0, d), lambda d: d > 0,
                                     _smoothing_unmatched),
    "memorisation_mmse": Case(_memo("mmse", lambda d: 0.25 - d), lambda d: 0.25 - d, lambda d: d > 0, _memo_unmatched),
    "memorisation_emmse": Case(_memo("emmse", lambda d: 0.25 - d), lambda d: 0.25 - d, lambda d: d > 0,
                               _memo_unmatched),
    "lemmse_generalises": Case(_memo("lemmse", lambda d: 0.25 + d), lambda d: 0.25 + d, lambda d: d >= 0,
                               _memo_unmatched),
    "emmse_invertible": Case(_emmse("deconvolution", 40.0), lambda d: 40 + d, lambda d: d >= 0, _emmse_unmatched),
    "emmse_not_invertible": Case(_emmse("inpainting", 40.0), lambda d: 40 + d, lambda d: d < 0, _emmse_unmatched),
    "architectures": Case(_arch, lambda d: 25 + d, lambda d: d > 0, _arch_unmatched),
    "dataset_size_limited": Case(_size_limited, lambda d: 3 + d, lambda d: d <= 0, _size_unmatched),
    "dataset_size_improves": Case(_size_improves, lambda d: d, lambda d: d > 0, _size_unmatched),
    "ood_gap_shrinks": Case(_ood, lambda d: d, lambda d: d > 0, _ood_unmatched),
    "ood_high_sigma": Case(_ood_high, lambda d: 25 + d, lambda d: d > 0, _ood_high_unmatched),
    "inference_time": Case(_timing, lambda d: 10 + d, lambda d: d >= 0, _timing_unmatched),
}


def _check(claim: str, case: Case, d: float) -> pd.Series:
    kwargs = case.build(d)
    row = run(claim, **kwargs)
    assert row["verdict"] == (HOLDS if case.holds(d) else FAILS), (claim, d, row["detail"])
    assert row["value"] == pytest.approx(case.value(d), rel=1e-9, abs=1e-9), (claim, d)
    return row


@pytest.mark.parametrize("claim", sorted(CASES))
@pytest.mark.parametrize("side", [+1, -1])
def test_claim_just_above_and_below_threshold(claim, side):
    d = side * EPS
    row = _check(claim, CASES[claim], d)
    if claim != "inference_time":  # a statistic over images: its interval brackets the value
        assert row["ci_low"] <= row["value"] + 1e-9 and row["value"] - 1e-9 <= row["ci_high"], row
    # unmatched cells change neither the value nor the interval
    extra = CASES[claim].unmatched()
    again = run(claim, **_merge(CASES[claim].build(d), extra))
    assert again["verdict"] == row["verdict"]
    for column in ("value", "ci_low", "ci_high"):
        assert again[column] == pytest.approx(row[column], nan_ok=True), (claim, column)


@pytest.mark.parametrize("claim", sorted(CASES))
def test_claim_absent_data_is_not_covered(claim):
    row = run(claim)
    assert row["verdict"] == NOT_COVERED and row["detail"] and math.isnan(row["value"])


@hsettings(max_examples=12, deadline=None)
@given(d=st.floats(-4.0, 4.0).filter(lambda x: abs(x) > 1e-3))
def test_agreement_value_follows_the_weakest_cell(d):
    _check("agreement", CASES["agreement"], d)


@hsettings(max_examples=12, deadline=None)
@given(d=st.floats(-1.5, 1.5).filter(lambda x: abs(x) > 1e-3))
def test_critical_slope_is_the_steepest_log_log_step(d):
    _check("critical_sigma", CASES["critical_sigma"], d)


def test_agreement_64_only_on_large_images():
    small = metrics(lambda **k: {"psnr_net_est": 5.0}, dataset=("s",), eval_dataset=("s",))
    for d in (EPS, -EPS):
        big = _agreement(d)["metrics_table"]
        row = run("agreement_64", pd.concat([big, small]), resolutions={"d": 64, "s": 16})
        assert row["value"] == pytest.approx(25 + d) and row["verdict"] == (HOLDS if d > 0 else FAILS)
    row = run("agreement_64", pd.concat([_agreement(EPS)["metrics_table"], small]), resolutions={"d": 32, "s": 16})
    assert row["verdict"] == NOT_COVERED and "64×64" in row["detail"]


def test_train_blowup_reads_only_problems_whose_pixels_can_be_copied():
    rows = _blowup_unmatched()["analytic_table"]
    row = run("train_blowup", analytic_table=rows)
    assert row["verdict"] == NOT_COVERED and "denoising" in row["detail"]
    row = run("train_blowup", analytic_table=pd.concat([_blowup(EPS)["analytic_table"], rows]))
    assert row["value"] == pytest.approx(10 + EPS) and row["verdict"] == HOLDS
    # the excluded problems are still reported, with their gap (train − test = −50 dB)
    assert "inpainting B=identity: -50.0 dB" in row["detail"] and "deconvolution B=pinv: -50.0 dB" in row["detail"]


def test_often_needs_most_cells_above_25():
    rows = _often(EPS)["metrics_table"]
    rows.loc[rows["sigma"] >= 0.1, "psnr_net_est"] -= 10  # 4 of 6 cells now below 25 dB
    row = run("often_30", rows)
    assert row["value"] == pytest.approx(2 / 6) and row["verdict"] == FAILS


def test_smoothing_fixed_s_reports_that_s_only():
    rows = _smoothing("psnr_net_est")(-EPS)["metrics_table"]
    row = run("smoothing_agreement", rows, settings=Settings(reps=10, smoothing=0.1))
    assert row["value"] == pytest.approx(1.0) and row["verdict"] == HOLDS
    assert run("smoothing_agreement", rows, settings=Settings(reps=10, smoothing=0.3))["verdict"] == NOT_COVERED


def test_patchwork_prefers_the_source_share():
    rows = _patchwork(+EPS)["analytic_table"]  # distinct sources rise: fails on them
    rows["source_share"] = rows["sigma"].map({0.01: 0.9, 0.1: 0.5, 1.0: 0.2})
    row = run("patchwork_dissolves", analytic_table=rows)
    assert row["value"] == pytest.approx(-0.7) and row["verdict"] == HOLDS


def test_preinverse_variance_from_stores(tmp_path):
    import xarray as xr

    from lemmse.store import save_dataset

    def store(task, ident, pinv):
        var = np.stack([np.stack([np.full((4, 4), ident * (1 + 0.1 * i)) for i in range(3)]),
                        np.stack([np.full((4, 4), pinv * (1 + 0.1 * i)) for i in range(3)])]).astype(np.float64)
        path = tmp_path / f"{task}-{ident}-{pinv}.zarr"
        save_dataset(xr.Dataset({"variance": (("preinverse", "image", "h", "w"), var)},
                                coords={"preinverse": ["identity", "pinv"]}), path)
        return path

    # inpainting ratio 0.5 (−log10 = 0.301), deconvolution ratio 3 (log10 = 0.477): the weaker is 0.301
    ok = {"inpainting": store("inpainting", 2.0, 1.0), "deconvolution": store("deconvolution", 1.0, 3.0)}
    row = run("preinverse_variance", variance=ok)
    assert row["verdict"] == HOLDS and row["value"] == pytest.approx(np.log10(2.0))
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    # a denoising store (not part of the claim) changes nothing
    again = run("preinverse_variance", variance={**ok, "denoising": store("denoising", 1.0, 100.0)})
    assert (again["value"], again["ci_low"], again["ci_high"]) == (row["value"], row["ci_low"], row["ci_high"])
    flipped = {"deconvolution": store("deconvolution", 3.0, 1.0)}
    row = run("preinverse_variance", variance=flipped)
    assert row["verdict"] == FAILS and row["value"] == pytest.approx(-np.log10(3.0))
    assert run("preinverse_variance", variance={"denoising": ok["inpainting"]})["verdict"] == NOT_COVERED


def test_identical_emmse_outputs_hold_with_an_infinite_psnr(tmp_path):
    # B = A⁺ = A⁻¹ for the blur: the two E-MMSE stores are bit-identical, PSNR ∞ in every cell
    pairs = estimator_pairs(lambda **k: {"psnr": np.inf}, task=("deconvolution", "inpainting"), estimator=("emmse",))
    row = run("emmse_invertible", estimator_pairs=pairs)
    assert row["verdict"] == HOLDS and math.isinf(row["value"]) and row["cells"] == 3
    assert math.isinf(row["ci_low"]) and math.isinf(row["ci_high"])
    assert "3 of 3 cells bit-identical" in row["detail"]
    table = compute_claims(EMPTY_M, EMPTY_A, only=["emmse_invertible"], estimator_pairs=pairs, settings=SETTINGS)
    write_claims(table, tmp_path / "claims.md", tmp_path / "claims.csv", config_label="fixture")
    assert " | ∞ [∞, ∞] | **holds** |" in (tmp_path / "claims.md").read_text()
    # inpainting identical everywhere: the estimators would be the same, the claim fails (not "not covered")
    assert run("emmse_not_invertible", estimator_pairs=pairs)["verdict"] == FAILS
    # one inpainting cell below 40 dB is enough to tell the estimators apart
    low = pairs.assign(psnr=np.where((pairs.task == "inpainting") & (pairs.sigma == 1.0), 39.0 - POOL_SHIFT, np.inf)
                       + pairs["image"].map(dict(enumerate(OFFSETS))))
    row = run("emmse_not_invertible", estimator_pairs=low)
    assert row["verdict"] == HOLDS and row["value"] == pytest.approx(39.0)
    assert "1 of 3 cells below 40 dB" in row["detail"]


def test_claims_are_in_order_and_ids_unique():
    table = compute_claims(EMPTY_M, EMPTY_A, settings=SETTINGS)
    assert list(table["id"]) == [c[0] for c in CLAIMS] and table["id"].is_unique
    assert set(CASES) | {"agreement_64", "preinverse_variance"} == set(table["id"])


def test_bootstrap_is_seeded():
    kwargs = _agreement(EPS)
    a, b = run("agreement", **kwargs), run("agreement", **kwargs)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    c = run("agreement", **kwargs, settings=Settings(reps=20, seed=4))
    assert c["value"] == a["value"]


def test_preinverse_kinds_come_from_the_config_and_the_tables_never_from_a_label_name():
    from lemmse.claims.core import Inputs, preinverse_kinds

    table = pd.DataFrame({"preinverse": ["phys", "plain"], "preinverse_kind": ["pinv", "identity"]})
    kinds = preinverse_kinds({"tik1e-2": {"kind": "tikhonov", "lam": 0.01}, "adj": "adjoint"}, table, None)
    assert kinds == {"identity": "identity", "pinv": "pinv", "phys": "pinv", "plain": "identity",
                     "tik1e-2": "tikhonov", "adj": "adjoint"}
    inputs = Inputs(metrics=table, analytic=table, preinverses=kinds)
    assert inputs.kind("phys") == "pinv" and inputs.kind("pinv_like") is None  # unresolved: no kind guessed
