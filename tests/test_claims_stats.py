"""The cell and bootstrap machinery of lemmse.claims.stats against direct computations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings, strategies as st
from scipy.stats import spearmanr

from lemmse.claims.stats import (Cells, NotCovered, bootstrap, cell_summaries, ends, mean_stat, pooled_psnr_stat,
                                 spearman_stat)


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=3, max_size=12))
def test_spearman_matches_scipy_with_ties(pairs):
    values = np.asarray(pairs, dtype=np.float64)
    ours = float(spearman_stat(values[None])[0])
    if np.ptp(values[:, 0]) == 0 or np.ptp(values[:, 1]) == 0:
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(spearmanr(values[:, 0], values[:, 1]).statistic, abs=1e-12)


def _frame(cells: dict) -> pd.DataFrame:
    return pd.DataFrame([dict(a=a, b=b, image=i, v=v) for (a, b), vs in cells.items() for i, v in enumerate(vs)])


def test_cell_summaries_means_and_invariance_to_other_cells():
    base = {("x", 1): [1.0, 2.0, 6.0], ("x", 2): [0.0, 4.0], ("y", 1): [5.0]}
    c = cell_summaries(_frame(base), ["a", "b"], ["v"], claim="c", reps=50, seed=1)
    assert c.point.to_dict() == {("x", 1): 3.0, ("x", 2): 2.0, ("y", 1): 5.0}
    assert c.boot.shape == (50, 3)
    # a replicate of the one-image cell is that image; the others are means of resampled values
    assert (c.boot[("y", 1)] == 5.0).all()
    assert set(np.round(c.boot[("x", 2)], 9)) <= {0.0, 2.0, 4.0}
    more = cell_summaries(_frame({**base, ("z", 9): [7.0, 8.0]}), ["a", "b"], ["v"], claim="c", reps=50, seed=1)
    pd.testing.assert_frame_equal(more.boot[c.boot.columns], c.boot)
    other_claim = cell_summaries(_frame(base), ["a", "b"], ["v"], claim="d", reps=50, seed=1)
    assert not other_claim.boot[("x", 1)].equals(c.boot[("x", 1)])


def test_cell_summaries_drop_nan_and_small_cells():
    frame = _frame({("x", 1): [1.0, np.nan, 3.0], ("x", 2): [4.0]})
    c = cell_summaries(frame, ["a", "b"], ["v"], claim="c", reps=5, seed=0, min_images=2)
    assert c.point.to_dict() == {("x", 1): 2.0}
    with pytest.raises(NotCovered, match="3 or more images"):
        cell_summaries(frame, ["a", "b"], ["v"], claim="c", reps=5, seed=0, min_images=3)


def test_vectorised_bootstrap_equals_row_by_row():
    rng = np.random.default_rng(0)
    cells = {(a, b): list(rng.normal(size=4) + b) for a in "xyz" for b in (1, 2, 3)}
    c = cell_summaries(_frame(cells), ["a", "b"], ["v"], claim="c", reps=200, seed=2)

    def per(x: pd.Series) -> pd.Series:  # per a: value at the largest b minus at the smallest
        e = ends(x, "b")
        return e["last"] - e["first"]

    value, low, high = bootstrap(c, per, "min")
    brute = np.array([per(row).min() for _, row in c.boot.iterrows()])
    assert value == pytest.approx(per(c.point).min())
    assert (low, high) == pytest.approx(tuple(np.quantile(brute, [0.025, 0.975])))


def test_bootstrap_rejects_unknown_reducer():
    c = Cells(pd.Series([1.0], index=pd.MultiIndex.from_tuples([("x",)], names=["a"])), pd.DataFrame([[1.0]]))
    with pytest.raises(ValueError, match="reduce"):
        bootstrap(c, lambda x: x, "sum")


def test_ends_takes_each_groups_own_extremes():
    index = pd.MultiIndex.from_tuples([("g", 1), ("g", 3), ("g", 5), ("h", 3), ("h", 4), ("k", 1)], names=["grp", "p"])
    s = pd.Series([10.0, 20.0, np.nan, 1.0, 2.0, 7.0], index=index)
    e = ends(s, "p")
    assert list(e.index) == ["g", "h"]  # k has one value: dropped
    assert e.loc["g", "first"] == 10.0 and e.loc["g", "last"] == 20.0 and e.loc["g", "last_at"] == 3
    assert e.loc["h", "first_at"] == 3 and e.loc["h", "last"] == 2.0


def test_mean_stat_over_images():
    values = np.arange(24, dtype=float).reshape(2, 4, 3)
    assert mean_stat(values).tolist() == [4.5, 16.5]


def test_pooled_psnr_is_the_psnr_of_the_mean_mse():
    values = np.array([[[10.0], [20.0]], [[np.inf], [np.inf]], [[np.inf], [30.0]]])
    out = pooled_psnr_stat(values)
    assert out[0] == pytest.approx(-10 * np.log10((0.1 + 0.01) / 2))
    assert np.isinf(out[1]) and out[2] == pytest.approx(30 + 10 * np.log10(2))


def test_bootstrap_in_chunks_equals_one_pass(monkeypatch):
    import lemmse.claims.stats as stats

    rng = np.random.default_rng(1)
    cells = {(a, b): list(rng.normal(size=3) + b) for a in "xyzw" for b in (1, 2)}
    c = cell_summaries(_frame(cells), ["a", "b"], ["v"], claim="c", reps=37, seed=0)

    def per(x: pd.Series) -> pd.Series:
        e = ends(x, "b")
        return e["last"] - e["first"]

    whole = bootstrap(c, per, "median")
    monkeypatch.setattr(stats, "CHUNK", 5)  # 1 replicate (8 cells) per chunk
    assert bootstrap(c, per, "median") == pytest.approx(whole)


def test_cell_seed_ignores_the_key_dtype():
    ints = _frame({("x", 1): [1.0, 2.0, 6.0]})
    floats = ints.assign(b=ints["b"].astype(float))
    a = cell_summaries(ints, ["a", "b"], ["v"], claim="c", reps=30, seed=0)
    b = cell_summaries(floats, ["a", "b"], ["v"], claim="c", reps=30, seed=0)
    np.testing.assert_array_equal(a.boot.to_numpy(), b.boot.to_numpy())
