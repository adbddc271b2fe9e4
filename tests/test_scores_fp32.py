"""The fp32-screened scoring of ``lemmse/estimators/stream.py`` against float64 and the brute force.

* the error bound of the fp32 screen holds for random and adversarial queries and keys
  (hypothesis): the float64 centred score always lies within the bound of the fp32 one;
* the screen keeps every key within the window ``W`` of its query's best logit (``log K + log 1/ε``
  when the number of keys ``K`` is known, else 87), the keys it drops hold less than ``ε`` of the
  weight together, and the logits it hands
  on are the float64 ones, bit for bit those of the dense float64 product up to its rounding;
* end to end on the real benchmark images, every task × pre-inverse, σ ∈ {1e-3, 1e-2, 0.1, 1}:
  the fast path (screen forced on, even for the small test problems) equals the float64 path and
  the independent brute force (float32 output within 1e-4, float64 within 1e-6), diagnostics
  included; adversarial measurements (a query equal to a key, near-ties, huge norms) too.
"""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bruteforce as bf
from lemmse.estimators import estimate
from lemmse.estimators import stream
from lemmse.estimators.stream import (WINDOW_MAX, WINDOW_TOLERANCE, KeyBlock, Queries, attend, float64_scores,
                                      key_screen, screen_constant, screen_error, score_stats, window, with_ones)
from test_exact_bruteforce import TOL32, TOL64, Oracle, assert_close

SIGMAS = (0.001, 0.01, 0.1, 1.0)


@pytest.fixture
def screen_always(monkeypatch):
    """Screen every key block, however small, and never fall back to dense tiles; a block's screen is
    cut into products of 1000 keys (the default 4096 runs in ``test_real_scale_fast_equals_float64_path``);
    balls of 16 queries pre-screen every tile, whatever they keep (the default 64 runs there too)."""
    monkeypatch.setattr(stream, "MIN_SCREEN_KEYS", 0)
    monkeypatch.setattr(stream, "DENSE_UNION", 1.01)
    monkeypatch.setattr(stream, "SCREEN_KEYS", 1000)
    monkeypatch.setattr(stream, "BALL_ROWS", 16)
    monkeypatch.setattr(stream, "BALL_GATHER", 1.0)


@pytest.fixture(scope="module")
def oracle(digits16, color16, test_noise) -> Oracle:
    return Oracle({"digits16": digits16, "color16": color16}, test_noise)


# ------------------------------------------------------------------------------------------------
# the bound itself
# ------------------------------------------------------------------------------------------------

def _vectors(draw, count: int, dim: int, scale: float) -> torch.Tensor:
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["normal", "uniform", "sparse", "offset"]))
    v = torch.randn(count, dim, generator=gen, dtype=torch.float64)
    if kind == "uniform":
        v = torch.rand(count, dim, generator=gen, dtype=torch.float64)
    elif kind == "sparse":
        v = v * (torch.rand(count, dim, generator=gen, dtype=torch.float64) < 0.2)
    elif kind == "offset":  # a large common offset: centring must cancel it
        v = v * 1e-3 + 5.0
    return v * scale


@st.composite
def screen_problems(draw):
    dim = draw(st.sampled_from([1, 2, 9, 25, 75, 256]))
    scale = draw(st.sampled_from([1e-4, 1e-2, 1.0, 30.0, 1e4]))
    q = _vectors(draw, draw(st.integers(1, 12)), dim, scale)
    k = _vectors(draw, draw(st.integers(1, 40)), dim, scale)
    if draw(st.booleans()):  # near-cancellation: keys equal to queries up to the last bits
        k[: q.shape[0]] = q[: k.shape[0]] * (1 + 1e-15)
    tau = draw(st.sampled_from([0.0, 1.0, -1e3, 1e6])) * scale * scale
    return q, k, tau


@settings(max_examples=150)
@given(screen_problems())
def test_fp32_screen_error_within_bound(problem):
    """|s̃ - (g - τ)| ≤ e for the fp32 product of ``[q', -½, -τ]`` and ``[k', ‖k'‖², 1]``."""
    q, k, tau = problem
    queries = Queries(q, torch.ones(q.shape[0], dtype=torch.float64))
    y32, k1, k2 = key_screen(k, queries.centre)
    x = queries.screen_rows.clone()
    x[:, -1] = -tau
    n = q.shape[1] + 2
    c = screen_constant(n)
    fp32 = torch.mm(x, y32).to(torch.float64)
    qc, kc = q[queries.order] - queries.centre, k - queries.centre
    exact = qc @ kc.T - 0.5 * (kc * kc).sum(dim=1) - tau  # float64: 1e-16-relative, far inside the bound
    bound = screen_error(c, n, queries.centred_norm[:, None] * k1 + k2 + abs(tau))
    excess = (fp32 - exact).abs() - bound
    assert bool((excess <= 0).all()), f"fp32 error exceeds its bound by {float(excess.max()):.3e}"
    # the bound is not vacuous: a few units of fp32 rounding of the magnitudes, no more
    assert bool((bound <= 1e-4 * (queries.centred_norm[:, None] * k1 + k2 + abs(tau)) + 1e-20).all())


# ------------------------------------------------------------------------------------------------
# the screen keeps every key that matters, with its float64 logit
# ------------------------------------------------------------------------------------------------

class Recorder:
    """A consumer that writes down the logits it receives, by query and key."""

    def __init__(self, n_queries: int, n_keys: int, order: torch.Tensor):
        self.logits = torch.full((n_queries, n_keys), torch.nan, dtype=torch.float64)
        self.order = order  # rows arrive as slices of the queries' tile order

    def update(self, rows, logits, values, *, first_owner=0, group=1, columns=None):
        assert isinstance(rows, slice), "attend hands slices of the tile order"
        cols = torch.arange(logits.shape[1]) if columns is None else columns
        offset = first_owner * group
        queries = self.order[rows]
        block = self.logits[queries]
        block[:, offset + cols] = logits
        self.logits[queries] = block


@st.composite
def attention_problems(draw):
    dim = draw(st.sampled_from([1, 9, 25, 48]))
    n_keys = draw(st.integers(20, 300))
    n_queries = draw(st.integers(1, 50))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    keys = torch.rand(n_keys, dim, generator=gen, dtype=torch.float64)
    case = draw(st.sampled_from(["plain", "ties", "query_is_key", "huge"]))
    if case == "ties":  # many exact and near duplicates of a few keys
        keys = keys[torch.randint(0, 5, (n_keys,), generator=gen)] + 1e-9 * torch.rand(n_keys, dim, generator=gen)
    sigma = torch.tensor(draw(st.sampled_from([1e-3, 1e-2, 0.05, 0.3, 1.0])), dtype=torch.float64)
    queries = keys[torch.randint(0, n_keys, (n_queries,), generator=gen)]
    if case != "query_is_key":
        queries = queries + sigma * torch.randn(n_queries, dim, generator=gen, dtype=torch.float64)
    if case == "huge":
        keys, queries = keys * 1e4, queries * 1e4
    spread = draw(st.sampled_from([0.0, 1.0]))  # one σ for all queries, or σ varying per query
    sigmas = sigma * torch.exp(spread * torch.randn(n_queries, generator=gen, dtype=torch.float64))
    known = draw(st.booleans())  # the window from the number of keys, or the widest one
    return (queries, keys, sigmas, draw(st.sampled_from([3, 16, 64])), draw(st.sampled_from([7, 50, 1000])),
            n_keys if known else None, draw(st.sampled_from([4096, 13, 100])), draw(st.sampled_from([1, 4, 16])))


def test_window_holds_the_dropped_weight_below_the_tolerance():
    assert window(None) == WINDOW_MAX
    for n_keys in (1, 10, 384_000, 10**12):
        w = window(n_keys)
        assert w <= WINDOW_MAX
        assert n_keys * np.exp(-w) <= WINDOW_TOLERANCE * (1 + 1e-12) or w == WINDOW_MAX
    assert window(10**40) == WINDOW_MAX


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attention_problems())
def test_screen_keeps_every_key_that_matters(screen_always, problem):
    """Balls of 1, 4 or 16 queries: used where they divide the query tile (3, 16, 64), else skipped."""
    q, k, sigma, query_block, key_block, n_keys, screen_keys, ball_rows = problem
    with mock.patch.object(stream, "BALL_ROWS", ball_rows):
        queries = Queries(q, 1.0 / sigma**2, n_keys)
    recorder = Recorder(q.shape[0], k.shape[0], queries.order)
    with score_stats() as stats, mock.patch.object(stream, "SCREEN_KEYS", screen_keys):
        for start in range(0, k.shape[0], key_block):
            block = k[start : start + key_block]
            values = with_ones(torch.zeros(block.shape[0], 1), torch.float64)
            attend(queries, KeyBlock(block, values, start, 1), recorder, query_block)
    dense = (q @ k.T - 0.5 * (k * k).sum(dim=1)) / sigma[:, None] ** 2
    best = dense.amax(dim=1, keepdim=True)
    needed = dense >= best - queries.window
    got = recorder.logits
    assert not bool(torch.isnan(got[needed]).any()), "a key within the window was screened out"
    weights = torch.exp(dense - best)
    dropped = torch.where(torch.isnan(got), weights, torch.zeros_like(weights)).sum(dim=1)
    tolerance = WINDOW_TOLERANCE if n_keys is not None else k.shape[0] * np.exp(-WINDOW_MAX)
    assert bool((dropped <= tolerance * weights.sum(dim=1) * (1 + 1e-9)).all()), "dropped keys weigh too much"
    scale = (q.abs().sum(1, keepdim=True) @ k.abs().sum(1, keepdim=True).T + (k * k).sum(1)) / sigma[:, None] ** 2
    kept = ~torch.isnan(got)
    assert bool(((got - dense).abs()[kept] <= 1e-14 * scale[kept] + 1e-300).all()), "a kept logit is not float64's"
    assert stats.pairs == q.shape[0] * k.shape[0]
    assert stats.rescored == int(kept.sum())
    assert stats.rescored <= stats.screened <= stats.pairs


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attention_problems(), st.sampled_from([0.0, 0.3, 1.0]))
def test_balls_keep_every_key_their_queries_need(problem, lift):
    """Each ball's fp32 pre-screen keeps every key with ``g_qk ≥ θ_q`` for some query ``q`` of the ball,
    with θ from the exact best logits (``lift`` = 0) or from lower bounds of them (``lift`` > 0: wider
    balls); and on keys spread around the queries it drops some."""
    q, k, sigma, _, _, n_keys, _, ball_rows = problem
    with mock.patch.object(stream, "BALL_ROWS", ball_rows):
        queries = Queries(q, 1.0 / sigma**2, n_keys)
    o = queries.order
    logits = (q @ k.T - 0.5 * (k * k).sum(dim=1)) / sigma[:, None] ** 2
    queries.max_logit = logits[o].amax(dim=1) - lift * queries.window
    y32, k1, k2 = key_screen(k, queries.centre)
    n = q.shape[1] + 2
    c = screen_constant(n)
    base = queries.centred_norm * k1 + k2 + queries.norm_terms
    if not stream._thresholds(queries, slice(0, queries.n), base, c, n):
        return
    assert stream._ball_thresholds(queries, slice(0, queries.ball_rows.shape[0]), k1, k2, c, n)
    qc, kc = q[o] - queries.centre, k - queries.centre
    g = qc @ kc.T - 0.5 * (kc * kc).sum(dim=1)
    slack = 1e-12 * (qc.norm(dim=1)[:, None] * kc.norm(dim=1) + (kc * kc).sum(dim=1) + queries.theta.abs()[:, None])
    needed = g >= queries.theta[:, None] - slack  # float64 and a hair of slack: may only add keys
    buffers = stream._Buffers(torch.device("cpu"))
    for j in range(queries.ball_rows.shape[0]):
        survivors = stream._screened_in(queries.ball_rows[j : j + 1], [(0, y32)], buffers)
        rows = slice(j * ball_rows, (j + 1) * ball_rows)
        want = needed[rows].any(dim=0).nonzero().flatten()
        missing = set(want.tolist()) - set(survivors.tolist())
        assert not missing, f"ball {j} dropped keys {sorted(missing)[:5]} that its queries need"


def test_balls_drop_far_keys_on_real_patches(digits16, test_noise):
    """On the benchmark's digits (denoising, σ = 0.05, D = 300) the balls drop about half the screen's
    pairs, and the estimate moves by less than the screen's own tolerance."""
    train = digits16[:300]
    y = (digits16[1500:1504].to(torch.float64) + 0.05 * test_noise[:4, :1].to(torch.float64)).to(torch.float32)
    kwargs = dict(task="denoising", estimator="lemmse", sigma=0.05, patch=5, dtype=torch.float64)
    with score_stats() as stats:
        with_balls = estimate(train, y, **kwargs).xhat
    with score_stats() as plain, mock.patch.object(stream, "BALL_ROWS", 7):  # 7 divides no tile: no balls
        without = estimate(train, y, **kwargs).xhat
    assert plain.dense_tiles == 0 and plain.screened == plain.pairs  # every pair screened, none dense
    assert 0.2 < stats.screened_fraction < 0.8, f"balls kept {stats.screened_fraction:.2f} of the pairs"
    assert 0 < stats.rescored <= plain.rescored
    assert float((with_balls - without).abs().max()) <= WINDOW_TOLERANCE


# ------------------------------------------------------------------------------------------------
# end to end: fast path = float64 path = brute force, on the real benchmark images
# ------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("task,pre", bf.TASK_PREINVERSES)
def test_lemmse_fast_equals_float64_and_bruteforce(screen_always, oracle, task, pre, sigma):
    name, patch = "digits", 5
    ref = oracle.reference(name, task, pre, sigma, "lemmse", patch)
    label = f"{task}/{pre} σ={sigma}"
    for dtype, tol in ((torch.float32, TOL32), (torch.float64, TOL64)):
        with score_stats() as stats:
            fast = oracle.run(name, task, pre, sigma, "lemmse", patch, dtype=dtype).xhat
        with float64_scores():
            slow = oracle.run(name, task, pre, sigma, "lemmse", patch, dtype=dtype).xhat
        assert stats.pairs > 0 and stats.dense_tiles < stats.tiles, f"{label}: the screen was not used"
        assert_close(fast, ref, tol, f"fast {label} {dtype}")
        assert_close(slow, ref, tol, f"float64 path {label} {dtype}")
        # the screen drops keys holding < WINDOW_TOLERANCE of the weight: values in [0, 1] move less
        assert_close(fast, slow.to(torch.float64).numpy(), 1e-6 if dtype == torch.float32 else WINDOW_TOLERANCE,
                     f"fast vs float64 path {label} {dtype}")


@pytest.mark.parametrize("sigma", SIGMAS)
def test_global_estimators_fast_equal_bruteforce(screen_always, oracle, sigma):
    ref = oracle.reference("color", "deconvolution", "pinv", sigma, "mmse")
    assert_close(oracle.run("color", "deconvolution", "pinv", sigma, "mmse").xhat, ref, TOL32, f"MMSE σ={sigma}")


@pytest.mark.parametrize("name,task,pre,sigma,patch", [
    ("digits", "inpainting", "pinv", 0.01, 5),
    ("digits", "denoising", "identity", 0.001, 3),
    ("color", "deconvolution", "pinv", 0.1, 3),
])
def test_diagnostics_fast_equal_float64_path(screen_always, oracle, name, task, pre, sigma, patch):
    with score_stats() as stats:
        fast = oracle.run(name, task, pre, sigma, "lemmse", patch, dtype=torch.float64, diagnostics=True)
    with float64_scores():
        slow = oracle.run(name, task, pre, sigma, "lemmse", patch, dtype=torch.float64, diagnostics=True)
    assert stats.rescored < stats.pairs or sigma >= 0.1
    for key in ("patch_log_density", "image_log_density"):
        a, b = fast.diagnostics[key], slow.diagnostics[key]
        assert bool(((a - b).abs() <= 1e-9 * (1 + b.abs())).all()), f"{key} differs by {float((a - b).abs().max()):.2e}"
    for key in ("mass99", "source"):
        assert torch.equal(fast.diagnostics[key], slow.diagnostics[key]), f"{key} differs"
    assert_close(fast.xhat, slow.xhat.numpy(), WINDOW_TOLERANCE, "xhat")


@pytest.mark.slow
@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("task,pre", bf.TASK_PREINVERSES)
def test_real_scale_fast_equals_float64_path(digits16, test_noise, task, pre, sigma):
    """D = 300 digits (76 800 keys, the default thresholds): the fast path against the float64 path."""
    train = digits16[:300]
    x = digits16[1500:1502].to(torch.float64)
    from lemmse.operators import make_problem

    options = {"hole": 7} if task == "inpainting" else {"blur_std": 1.0} if task == "deconvolution" else {}
    problem = make_problem(task, (16, 16), **options)
    y = (problem.A(x) + sigma * test_noise[:2, :1].to(torch.float64)).to(torch.float32)
    kwargs = dict(task=task, estimator="lemmse", sigma=sigma, preinverse=pre, patch=5,
                  lam=0.01 if pre == "tikhonov" else None, **options)
    # both paths take the same float64 logits, blocked differently: they agree to float64 rounding,
    # ~1e-16·‖q‖‖k‖/σ², which A⁺ deconvolution (noise amplified) at σ = 1e-3 lifts to ~1e-11, and
    # to the weight of the keys the screen drops, < WINDOW_TOLERANCE of the total (values in [0, 1])
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, WINDOW_TOLERANCE + 1e-9)):
        with score_stats() as stats:
            fast = estimate(train, y, dtype=dtype, **kwargs).xhat
        with float64_scores():
            slow = estimate(train, y, dtype=dtype, **kwargs).xhat
        err = float((fast.to(torch.float64) - slow.to(torch.float64)).abs().max())
        assert err <= tol, f"{task}/{pre} σ={sigma} {dtype}: fast vs float64 path {err:.2e}"
        if sigma == 0.001 and pre == "identity":
            assert stats.rescored_fraction < 0.25, f"screen kept {stats.rescored_fraction:.2f} of the pairs"


@pytest.mark.parametrize("case", ["query_is_key", "near_ties", "huge_norms"])
def test_adversarial_measurements(screen_always, digits16, case):
    """A measurement equal to a training image, near-tied training images, values ×1e4."""
    gen = torch.Generator().manual_seed(3)
    train = digits16[:40].to(torch.float64).clone()
    y = train[[3, 17]].clone()
    sigma = 1e-3
    if case == "near_ties":
        train = torch.cat([train, train[:20] + 1e-7 * torch.rand(20, 1, 16, 16, generator=gen, dtype=torch.float64)])
        y = y + 1e-4 * torch.randn(y.shape, generator=gen, dtype=torch.float64)
    if case == "huge_norms":
        train, y, sigma = train * 1e4, (y + 1e-3 * torch.randn(y.shape, generator=gen, dtype=torch.float64)) * 1e4, 10.0
    ref = bf.lemmse(train.numpy(), y.numpy(), np.eye(256), np.eye(256), 3, sigma)
    scale = float(train.abs().max())
    for dtype, tol in ((torch.float32, TOL32), (torch.float64, TOL64)):
        kwargs = dict(task="denoising", estimator="lemmse", sigma=sigma, patch=3, dtype=dtype, key_block=2048)
        got = estimate(train, y, **kwargs).xhat  # float64 inputs: both sides see the same numbers
        assert_close(got / scale, ref / scale, tol, f"{case} {dtype}")
