"""The agreement claim per configuration: hand-built metrics with known means and medians."""
from __future__ import annotations

import pandas as pd
import pytest

from lemmse.claims.breakdown import agreement_breakdown, breakdown_markdown


def _rows(arch: str, split: str, sigma: float, values, **extra) -> list[dict]:
    base = dict(dataset="digits", eval_dataset="digits", task="denoising", preinverse="identity", arch=arch,
                patch=5, train_size=300, estimator="lemmse", smoothing=0.0, sigma=sigma, split=split)
    base.update(extra)
    return [dict(base, image=i, psnr_net_est=v) for i, v in enumerate(values)]


def _metrics() -> pd.DataFrame:
    rows = []
    rows += _rows("unet", "test", 0.01, [20.0, 22.0, 30.0])   # mean 24, median 22: below 25
    rows += _rows("unet", "test", 0.05, [25.0, 26.0, 27.0])   # mean 26
    rows += _rows("unet", "test", 0.2, [30.0, 31.0, 35.0])    # mean 32
    rows += _rows("resnet", "test", 0.01, [26.0, 26.0, 26.0])
    rows += _rows("resnet", "test", 0.05, [24.0, 25.0, 25.9])  # mean 24.97: just below
    rows += _rows("resnet", "test", 0.2, [40.0, 40.0, 40.0])
    # unmatched rows that must not enter: OOD evaluation, a smoothed estimator
    rows += _rows("unet", "test", 0.05, [0.0, 0.0, 0.0], eval_dataset="faces")
    rows += _rows("unet", "test", 0.05, [0.0, 0.0, 0.0], estimator="smoothed", smoothing=0.02)
    return pd.DataFrame(rows)


def test_breakdown_means_medians_and_verdicts():
    table = agreement_breakdown(_metrics(), threshold=25.0, sigma_floor=0.05).set_index("arch")
    assert table.loc["unet", "mean@0.01"] == pytest.approx(24.0)
    assert table.loc["unet", "median@0.01"] == pytest.approx(22.0)
    assert table.loc["unet", "mean@0.05"] == pytest.approx(26.0)
    assert table.loc["unet", "lowest_mean"] == pytest.approx(24.0)
    assert not table.loc["unet", "holds_all_sigma"] and table.loc["unet", "holds_from_floor"]
    assert table.loc["resnet", "mean@0.05"] == pytest.approx(74.9 / 3)
    assert not table.loc["resnet", "holds_all_sigma"] and not table.loc["resnet", "holds_from_floor"]
    assert len(table) == 2  # the OOD and smoothed rows made no configuration of their own


def test_breakdown_markdown_lists_every_configuration():
    table = agreement_breakdown(_metrics())
    text = "\n".join(breakdown_markdown(table, 25.0, 0.05))
    assert "| digits | denoising, identity | unet | 5 | 300 | test | 24.0 / 22.0 | 26.0 / 26.0 | 32.0 / 31.0 | **no** | yes |" in text
    assert breakdown_markdown(agreement_breakdown(_metrics().iloc[:0]), 25.0, 0.05) == []
    # per problem: unet holds from σ = 0.05 on, resnet nowhere (24.97 at 0.05), neither at every σ
    assert ("- digits, denoising, identity, P = 5, N = 300: 0 of 2 at every σ (every curve of: none); 1 of 2 at "
            "every σ ≥ 0.05 (every curve of: unet)") in text


def test_problem_summary_counts_curves_and_names_the_architectures_that_hold_everywhere():
    from lemmse.claims.breakdown import problem_summary

    rows = _metrics()
    more = pd.DataFrame([dict(r, split="train", psnr_net_est=30.0) for r in rows.to_dict("records")])
    other = pd.DataFrame([dict(r, task="inpainting", psnr_net_est=10.0) for r in rows.to_dict("records")])
    small = pd.DataFrame([dict(r, patch=3, psnr_net_est=10.0) for r in rows.to_dict("records")])  # its own line
    summary = problem_summary(agreement_breakdown(pd.concat([rows, more, other, small])))
    assert len(summary) == 3 and set(summary[summary["patch"] == 3]["holds_all_sigma"]) == {0}
    summary = summary[summary["patch"] == 5].set_index("task")
    den = summary.loc["denoising"]
    assert (den["curves"], den["holds_all_sigma"], den["holds_from_floor"]) == (4, 2, 3)
    assert den["archs_all_sigma"] == "" and den["archs_from_floor"] == "unet"  # resnet fails on its test curve
    inp = summary.loc["inpainting"]
    assert (inp["curves"], inp["holds_all_sigma"], inp["archs_from_floor"]) == (2, 0, "")
