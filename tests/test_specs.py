"""Labels resolved once (lemmse.plan.specs): the plan, the tables and the figures read the same
specs; B y is applied by one function (lemmse.operators.preinvert) with the configured operator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lemmse.errors import LemmseInputError
from lemmse.gather import planned_tables
from lemmse.operators import make_problem, preinvert
from lemmse.plan.specs import BUILTIN_ESTIMATORS, estimator_specs, preinverse_specs
from lemmse.plan.config import load_config
from lemmse.plan.sweep import estimate_options, make_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return make_plan(load_config(ROOT / "config" / "paper.yaml"))


def test_labels_resolve_to_typed_specs(paper):
    assert paper.preinverse("tik1e-2").kind == "tikhonov" and paper.preinverse("tik1e-2").lam == 0.01
    assert paper.preinverse("pinv").options() == {"preinverse": "pinv", "lam": None}
    smoothed = paper.estimator("smoothed-s0.05")
    assert (smoothed.kind, smoothed.smoothing, smoothed.samples, smoothed.patched) == ("smoothed", 0.05, 16, True)
    assert all(paper.estimator(label).kind == label for label in BUILTIN_ESTIMATORS)
    with pytest.raises(LemmseInputError, match="define it under estimators"):
        paper.estimator("tik1e-2")
    assert set(preinverse_specs(paper.config)) == set(paper.config["preinverses"])
    assert set(estimator_specs(paper.config)) == set(paper.config["estimators"]) | set(BUILTIN_ESTIMATORS)


def test_estimate_options_come_from_the_spec(paper):
    run = next(a for a in paper.analytics if a.estimator == "smoothed-s0.01")
    options = estimate_options(paper.config, run)
    assert options["estimator"] == "smoothed" and options["smoothing"] == 0.01 and options["samples"] == 16
    assert options["patch"] == run.patch
    memo = next(a for a in paper.memorisation if a.estimator == "mmse")
    assert "patch" not in estimate_options(paper.config, memo) and memo.patch == 0


def test_planned_tables_carry_the_resolved_labels(paper):
    metrics, analytic = planned_tables(paper)
    for table in (metrics, analytic):
        for row in table[["preinverse", "preinverse_kind", "lam", "estimator", "estimator_label"]].drop_duplicates() \
                .itertuples(index=False):
            pre, est = paper.preinverse(row.preinverse), paper.estimator(row.estimator_label)
            assert (row.preinverse_kind, est.kind) == (pre.kind, row.estimator)
            assert (np.isnan(row.lam) if pre.lam is None else row.lam == pre.lam)
    specs = {r.spec for r in paper.networks}
    assert set(metrics["train_sigma"]) == specs


def test_preinvert_uses_the_configured_operator():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((2, 3, 1, 16, 16))
    small, large = (preinvert(y, "inpainting", "pinv", hole=h) for h in (3, 9))
    assert small.shape == y.shape and not np.allclose(small, large)
    import torch

    B = make_problem("inpainting", (16, 16), hole=9).preinverse("pinv")
    expected = B(torch.from_numpy(y.reshape(-1, 1, 16, 16))).numpy().reshape(y.shape)
    assert np.allclose(large, expected)
