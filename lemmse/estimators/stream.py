r"""Gaussian kernel regression streamed over blocks of training images, scored at fp32 speed.

Every fast path reduces to softmax attention with logits

.. math::  l_{qk} = (q\cdot k - ‖k‖^2/2)/σ_q^2 = -‖q - k‖^2/(2σ_q^2) + ‖q‖^2/(2σ_q^2),

the last term being constant per query (it cancels in the softmax and is added back for the
densities). Consumers receive ``l`` computed in float64 as the product of augmented vectors
``[q/σ², -1/(2σ²)]·[k, ‖k‖²]`` (error ~1e-16·‖q‖‖k‖/σ², below 1e-7 even at σ = 1e-3) — but only
for the keys whose weight can matter. Which those are is decided by a cheaper fp32 product whose
rounding error is bounded rigorously.

**Screening (fp32).** With a centre ``c`` (the mean query of the set; it shrinks the norms),
``q' = q - c``, ``k' = k - c``, the centred score ``g = q'·k' - ‖k'‖²/2`` satisfies
``σ² l = g + ρ_q`` with ``ρ_q = (‖q‖² - ‖q'‖²)/2`` constant per query. A key can be dropped for
query ``q`` when ``l_qk < M_q - W``, ``M_q`` being a lower bound of the largest logit of ``q`` (the
best exact logit seen so far): its weight is below ``e^{-W}`` of the largest. In ``g`` units the
threshold is ``θ_q = (M_q - W)σ_q² - ρ_q``. One fp32 product of ``x_q = [q', -½, -τ_q]`` with
``y_k = [k', ‖k'‖², 1]`` (inner length ``n = F + 2``) gives ``s̃ ≈ g - τ``; rounding the inputs to
fp32 (relative error ``u = 2⁻²⁴`` each) and the standard bound for a dot product
``|fl(x·y) - x·y| ≤ γ_n Σ|x_l||y_l|``, ``γ_n = nu/(1 - nu)`` — valid in any summation order,
with or without FMA — give

.. math::  |s̃_{qk} - (g_{qk} - τ_q)| \le c\,(‖q'‖\,K_1 + K_2 + |τ_q|), \qquad
           c = 2u + u^2 + γ_n (1+u)^2,

(Cauchy-Schwarz on the feature part; ``K_1 = \max_k ‖k'‖`` and ``K_2 = \max_k ‖k'‖²/2`` per
key block). With ``τ_q = θ_q - e_q`` and ``e_q = c(‖q'‖K_1 + K_2 + |θ_q|)/(1 - c)`` (which
bounds the error since ``|τ| ≤ |θ| + e``), every key with ``g ≥ θ`` has ``s̃ ≥ 0``: a key is
*screened in* for the tile when ``max_q s̃_{qk} ≥ 0`` — one column maximum of the fp32 tile.
``c`` carries an extra ``2⁻⁴⁰`` and ``e`` an absolute ``2⁻¹⁰⁰·n(1 + ·)`` of slack, covering every
float64 rounding of the screen (centring, ``ρ``, ``θ``) and fp32 underflow.

**Pre-screen by balls (fp32).** Most keys of a block lie far from every query of a tile, and
the tile's screen product is the largest cost of the fast path. So a tile is first cut into
sub-tiles of :data:`BALL_ROWS` queries, each enclosed in a ball: ``g_{qk} ≥ θ_q`` is
``‖q' - k'‖ ≤ r_q`` with ``r_q² = ‖q'‖² - 2θ_q``, so by the triangle inequality a key that
matters for some query of a sub-tile with centre ``c`` lies within ``R = \max_q (r_q + ‖q' - c‖)``
of ``c``: ``h_k = c·k' - ‖k'‖²/2 - (‖c‖² - R²)/2 ≥ 0``. That is a screen row of the same form,
``[c, -½, -τ]`` with ``θ = (‖c‖² - R²)/2`` and the same error bound; the tile's screen then runs
on the keys kept by some sub-tile's ball only (:func:`_ball_thresholds`; the balls' rows go
through :func:`_screened_in` like the queries'). ``r`` and ``R`` carry a
relative ``2⁻³⁰`` of slack over their float64 roundings. A key the balls drop has ``g < θ`` for every
query of the tile: it is one the screen would drop too, so the kept set can only shrink to keys
that provably do not matter.

**Rescoring (float64).** The screened-in columns are scored exactly as above (one float64
product on the gathered keys) and handed to the consumer with ``columns`` naming them; the rows
of a tile are queries sorted by σ and then in space (a k-d tree along principal axes) so that similar
queries share their columns. Keys
left out hold less than ``e^{-W}`` of their query's largest weight. With ``K`` keys met by the
query over the whole stream (``n_keys`` of :class:`Queries`) the window is
``W = log K + log(1/ε)``, ``ε = 1e-8`` (:func:`window`): the dropped keys then hold less than
``ε`` of the total weight together, so the output moves by less than ``ε`` times the spread of
the values and ``log Z`` by less than ``ε`` — far inside the float64 contract (1e-6). Without
``n_keys`` the window is :data:`WINDOW_MAX`, fp32's smallest normal exponent, where the
accumulator clamps anyway. ``M_q`` starts from a probe (the first tile's fp32 row maxima
minus their bound) and then follows the exact rescored logits, across key blocks and passes.
The diagnostics read the screened tiles too: a dropped key owns no source-map pixel (the largest
key is always kept, and an image's share counts its kept keys up to ``ε``) and lies below the
99 %-mass window (``log K + 4.6`` below the maximum, inside ``W``).

A tile whose screened-in columns are most of the block (large σ, where nearly every key
matters) is scored directly by the dense float64 product, as is every tile when the fp32 screen
cannot help (no features, small key blocks, norms near fp32 overflow) or inside :func:`float64_scores`, which
forces the reference path (the benchmark's baseline and the tests' second opinion).
:func:`score_stats` counts the pairs scored and rescored in float64.
"""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch

from lemmse.estimators import tile_threads
from lemmse.progress import progress_bar

#: Total weight the dropped keys of a query may hold, relative to its largest weight's sum.
WINDOW_TOLERANCE = 1e-8
#: The window when the number of keys a query meets is unknown: weights below e^-87 underflow fp32.
WINDOW_MAX = 87.0
#: fp32 unit roundoff.
U32 = 2.0**-24
#: Relative slack covering the float64 roundings of the screen; absolute slack per product term.
SLACK_REL = 2.0**-40
SLACK_ABS = 2.0**-100
#: A tile whose screened-in columns exceed this fraction of the block is scored densely.
DENSE_UNION = 0.6
#: After a dense tile, the screen is retried every this many key blocks.
RESCREEN_EVERY = 8
#: Leaf size of the spatial query order (a tile of queries is one or a few leaves).
SORT_LEAF = 64
#: Key blocks smaller than this are scored densely (the screen's overhead would not pay).
MIN_SCREEN_KEYS = 2048
#: The fp32 screen of a tile is one product per this many keys of the block: its inner length is only
#: ``F + 2``, so it is bound by writing and re-reading its scores, which stay in cache at 128-256 rows
#: × 4096 (2-4 MB); 128 × 16 384 in one product ran 2.5× slower per pair on a 2-core AMD EPYC
#: (``lemmse bench --diagnostics`` uses such long key blocks).
SCREEN_KEYS = 4096
#: Norm products beyond this risk fp32 overflow: such tiles are scored in float64 directly.
FP32_SAFE = 2.0**100
#: Queries per ball of the pre-screen (one leaf of the spatial order): smaller balls drop more keys
#: but cost more rows. Denoising D = 1500, σ = 0.05, 256-query tiles of 8192 keys: balls of 256, 64
#: and 16 queries drop 52, 58 and 59 % of the screen's pairs.
BALL_ROWS = 64
#: The tile's screen runs on the balls' survivors only when they are at most this fraction of the
#: block (gathering their columns costs a pass over them); otherwise on the whole block.
BALL_GATHER = 0.75
#: Relative slack of the balls' radii over their float64 roundings (each ~F·2⁻⁵³).
BALL_SLACK = 2.0**-30


class Consumer(Protocol):
    def update(self, rows: slice, logits: torch.Tensor, values, *, first_owner: int = 0,
               group: int = 1, columns: torch.Tensor | None = None) -> None: ...


@dataclass
class ScoreStats:
    """Pairs (query, key) scored, and how many of them in float64."""

    pairs: int = 0
    rescored: int = 0
    tiles: int = 0
    dense_tiles: int = 0
    #: pairs whose fp32 screen score was computed after the ball pre-screen (dense tiles excluded)
    screened: int = 0

    @property
    def rescored_fraction(self) -> float:
        return self.rescored / self.pairs if self.pairs else 0.0

    @property
    def screened_fraction(self) -> float:
        """Fraction of the pairs that reached the per-query fp32 screen (the rest: dropped by the balls,
        or scored in float64 directly on dense tiles)."""
        return self.screened / self.pairs if self.pairs else 0.0


_collectors: list[ScoreStats] = []
_reference_depth = 0


@contextlib.contextmanager
def score_stats() -> Iterator[ScoreStats]:
    """Count, within the block, the pairs every :func:`attend` call scores and rescores."""
    stats = ScoreStats()
    _collectors.append(stats)
    try:
        yield stats
    finally:
        _collectors.remove(stats)


@contextlib.contextmanager
def float64_scores() -> Iterator[None]:
    """Within the block, score every pair with the dense float64 product (the reference path)."""
    global _reference_depth
    _reference_depth += 1
    try:
        yield
    finally:
        _reference_depth -= 1


_count_lock = threading.Lock()


def _count(pairs: int, rescored: int, dense: bool, screened: int = 0) -> None:
    with _count_lock:  # tiles may run concurrently
        for s in _collectors:
            s.pairs += pairs
            s.rescored += rescored
            s.tiles += 1
            s.dense_tiles += int(dense)
            s.screened += screened


@contextlib.contextmanager
def _ieee_fp32() -> Iterator[None]:
    """fp32 products in IEEE single precision (no TF32 / bf16 shortcuts) within the block."""
    saved = torch.get_float32_matmul_precision()
    saved_cuda = torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)
        torch.backends.cuda.matmul.allow_tf32 = saved_cuda


def screen_constant(n: int) -> float:
    """``c`` of the module docstring for inner length ``n`` (plus the relative slack); inf if unusable."""
    nu = n * U32
    if nu >= 0.25:
        return float("inf")
    gamma = nu / (1.0 - nu)
    return 2 * U32 + U32 * U32 + gamma * (1 + U32) ** 2 + SLACK_REL


def screen_error(c: float, n: int, magnitude: torch.Tensor) -> torch.Tensor:
    """Error bound ``e`` of a screened score from ``magnitude = ‖q'‖K₁ + K₂ + |θ| + …``."""
    return c * magnitude / (1.0 - c) + SLACK_ABS * n * (1.0 + magnitude)


@dataclass
class KeyBlock:
    """Keys of one block of training images: ``group`` consecutive keys per image."""

    features: torch.Tensor  # (K, F) float64
    values: torch.Tensor  # (K, V + 1): values and a column of ones
    first_owner: int
    group: int

    def augmented(self) -> torch.Tensor:
        """``[k, ‖k‖²]`` float64, ``(K, F + 1)``."""
        k = self.features
        return torch.cat([k, (k * k).sum(dim=1, keepdim=True)], dim=1)


class Queries:
    """Queries ``(Q, F)`` float64 with ``1/σ²`` per query, prepared once for every key block.

    Holds the float64 augmented rows ``[q/σ², -1/(2σ²)]`` in the tile order ``order`` (sorted
    by σ and in space: consumers hold their queries in that order too), their fp32 centred copies, and the running lower bound
    ``max_logit`` of each query's largest logit (sorted order), which the screen needs. That
    bound is valid only while every consumer of these queries sees the same keys (one training
    set, streamed once or several times).
    """

    def __init__(self, features: torch.Tensor, inv_var: torch.Tensor, n_keys: int | None = None):
        self.n, self.dim = features.shape
        #: keys further than this below a query's best logit are dropped (:func:`window`)
        self.window = window(n_keys)
        self.centre = features.mean(dim=0) if self.n else features.new_zeros(self.dim)
        centred = features - self.centre
        sq = (features * features).sum(dim=1)
        csq = (centred * centred).sum(dim=1)
        var = 1.0 / inv_var
        order = torch.argsort(var, stable=True)
        _, counts = torch.unique_consecutive(var[order], return_counts=True)
        parts, first = [], 0
        for count in counts.tolist():  # queries of one σ together, each set in spatial order
            part = order[first : first + count]
            parts.append(part[spatial_order(features[part])])
            first += count
        self.order = torch.cat(parts) if parts else order
        o = self.order
        self.sorted_augmented = torch.cat([features[o] * inv_var[o, None], -0.5 * inv_var[o, None]], dim=1)
        half = torch.full((self.n, 1), -0.5, dtype=features.dtype, device=features.device)
        rows = centred[o]
        # fp32 screen rows [q', -½, -τ]; the last column is rewritten before every screen
        self.screen_rows = torch.cat([rows, half, torch.zeros_like(half)], dim=1).to(torch.float32)
        self.centred_sq = csq[o]
        self.centred_norm = self.centred_sq.sqrt()
        self.var = var[o]
        self.inv_var = inv_var[o]
        self.rho = 0.5 * (sq[o] - csq[o])
        self.norm_terms = sq[o] + csq[o]  # covers the float64 rounding of ρ and of M's probe
        self.max_logit = torch.full((self.n,), -torch.inf, dtype=torch.float64, device=features.device)
        #: θ of every row, written with its screen rows by :func:`_thresholds`
        self.theta = torch.full((self.n,), -torch.inf, dtype=torch.float64, device=features.device)
        # the balls of the pre-screen: runs of ball_size rows of the tile order, their centres, each
        # row's distance to its ball's centre, and fp32 screen rows [c, -½, -τ] (τ rewritten per block)
        self.ball_size = BALL_ROWS
        owner = torch.arange(self.n, device=features.device) // self.ball_size
        balls = -(-self.n // self.ball_size)
        counts = torch.bincount(owner, minlength=balls).to(features.dtype)
        centres = rows.new_zeros(balls, self.dim).index_add_(0, owner, rows) / counts[:, None]
        self.ball_offset = (rows - centres[owner]).norm(dim=1)
        self.ball_centre_sq = (centres * centres).sum(dim=1)
        self.ball_centre_norm = self.ball_centre_sq.sqrt()
        self.ball_rows = torch.cat([centres, half[:balls], torch.zeros_like(half[:balls])], dim=1).to(torch.float32)
        self._dense_streak: dict[int, int] = {}

    @property
    def shape(self) -> torch.Size:
        """Shape of the augmented rows ``(Q, F + 1)``."""
        return self.sorted_augmented.shape


def spatial_order(points: torch.Tensor, leaf: int = SORT_LEAF) -> torch.Tensor:
    """An order of ``points`` ``(Q, F)`` in which neighbours in the order are near in space.

    Recursive halving at the median of the principal direction (a k-d tree along principal
    axes, found by a few power iterations), leaves of ``≤ leaf`` points kept in the order of
    their norm. Tiles of consecutive queries then share most of their nearby keys.
    """
    order = torch.arange(points.shape[0], device=points.device)
    if points.shape[0] <= leaf or points.shape[1] == 0:
        return order[torch.argsort((points * points).sum(dim=1), stable=True)]
    centred = points - points.mean(dim=0)
    direction = centred.abs().mean(dim=0) + 1.0  # deterministic start
    for _ in range(8):
        direction = centred.T @ (centred @ direction)
        norm = direction.norm()
        if not bool(norm > 0):
            return order[torch.argsort((points * points).sum(dim=1), stable=True)]
        direction = direction / norm
    split = torch.argsort(centred @ direction, stable=True)
    half = points.shape[0] // 2
    low, high = split[:half], split[half:]
    return torch.cat([low[spatial_order(points[low], leaf)], high[spatial_order(points[high], leaf)]])


def augmented_queries(features: torch.Tensor, inv_var: torch.Tensor, n_keys: int | None = None) -> Queries:
    """Prepare ``features`` ``(Q, F)`` float64 with ``inv_var`` = ``1/σ²`` per query for :func:`attend`;
    ``n_keys``: how many keys each query meets over the whole stream (it sets the window)."""
    return Queries(features, inv_var, n_keys)


def with_ones(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[values, 1]`` in ``dtype``: the ones column yields the normaliser in the same product."""
    ones = torch.ones(values.shape[0], 1, dtype=dtype, device=values.device)
    return torch.cat([values.to(dtype), ones], dim=1)


class _Buffers:
    """Reused fp32/float64 tile workspaces (no allocation or page faults per tile)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.held: dict[torch.dtype, torch.Tensor] = {}

    def get(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        size = rows * cols
        buf = self.held.get(dtype)
        if buf is None or buf.numel() < size:
            buf = torch.empty(size, dtype=dtype, device=self.device)
            self.held[dtype] = buf
        return buf[:size].view(rows, cols)


def attend(queries: Queries, keys: KeyBlock, consumer: Consumer, query_block: int) -> None:
    """Feed ``consumer`` the logits of every query against one key block, a query tile at a time.

    Only keys screened in (module docstring) reach the consumer, with ``columns`` naming them
    within the block; their logits are exact in float64. ``rows`` is a slice of the queries'
    *tile order* ``queries.order`` (sorted by σ, then in space), on every path: a consumer holds
    its queries in that order (``StreamingSoftmax(..., order=queries.order)`` reads them back in
    the original one), so every tile is a contiguous run of its rows. On several CPU threads the
    tiles run concurrently (:mod:`lemmse.estimators.tile_threads`): a consumer must accept updates
    of distinct rows from several threads at once.
    """
    if _reference_depth or queries.dim == 0:
        _attend_float64(queries, keys, consumer, query_block)
        return
    k_aug = keys.augmented()
    n_k, n = k_aug.shape[0], queries.dim + 2
    y32, k1, k2 = key_screen(keys.features, queries.centre)
    screens = screen_chunks(y32)
    c = screen_constant(n)
    base = queries.centred_norm * k1 + k2 + queries.norm_terms  # θ-free part of the magnitude
    usable = c < 1.0 and n_k >= MIN_SCREEN_KEYS and bool((base < FP32_SAFE).all())
    ready = (usable and bool(torch.isfinite(queries.max_logit).all())
             and _thresholds(queries, slice(0, queries.n), base, c, n))
    # balls only where every tile is made of whole balls (a ball's rows share one thread)
    balls = usable and query_block % queries.ball_size == 0
    balls_ready = balls and ready and _ball_thresholds(queries, slice(0, queries.ball_rows.shape[0]), k1, k2, c, n)
    scratch = threading.local()  # each thread's tile workspaces

    def tile(sl: slice) -> None:
        held = tile_threads.scratch(scratch)
        buffers = held.get("tile")
        if buffers is None:
            buffers = held["tile"] = _Buffers(queries.sorted_augmented.device)
        rows = sl.stop - sl.start
        streak = queries._dense_streak.get(sl.start, 0)
        dense = not usable or bool(streak and streak % RESCREEN_EVERY)
        if not (dense or ready):
            if not bool(torch.isfinite(queries.max_logit[sl]).all()):
                _probe(queries, sl, screens, base[sl], c, n, buffers)
            dense = not _thresholds(queries, sl, base[sl], c, n)
        if not dense:
            own = slice(sl.start // queries.ball_size, -(-sl.stop // queries.ball_size))
            survivors = None
            if balls_ready or (balls and not ready and _ball_thresholds(queries, own, k1, k2, c, n)):
                survivors = _screened_in(queries.ball_rows[own], screens, buffers)  # the balls' screen
                if survivors.numel() > BALL_GATHER * n_k:  # gathering would not pay: screen the block
                    survivors = None
            if survivors is None:
                candidates, pieces = n_k, screens
            else:
                candidates, pieces = survivors.numel(), screen_chunks(y32.index_select(1, survivors))
            columns = _screened_in(queries.screen_rows[sl], pieces, buffers)
            if survivors is not None:
                columns = survivors[columns]
            dense = columns.numel() > DENSE_UNION * n_k
        if dense:
            _dense_tile(queries, sl, k_aug, keys, consumer, buffers)
            queries._dense_streak[sl.start] = streak + 1
            return
        queries._dense_streak[sl.start] = 0
        _count(rows * n_k, rows * columns.numel(), dense=False, screened=rows * candidates)
        if columns.numel() == 0:
            return
        logits = buffers.get(rows, columns.numel(), torch.float64)
        torch.mm(queries.sorted_augmented[sl], k_aug.index_select(0, columns).T, out=logits)
        _raise_max(queries, sl, logits)
        consumer.update(sl, logits, keys.values.index_select(0, columns),
                        first_owner=keys.first_owner, group=keys.group, columns=columns)

    tiles = [slice(start, min(start + query_block, queries.n)) for start in range(0, queries.n, query_block)]
    with _ieee_fp32():
        tile_threads.run_tiles(tile, tiles, tile_threads.workers_for(len(tiles), k_aug.device))


def window(n_keys: int | None) -> float:
    """``W = log K - log ε`` (at most :data:`WINDOW_MAX`): keys more than ``W`` below their query's
    best logit hold, all ``K`` together, less than ``ε`` = :data:`WINDOW_TOLERANCE` of its weight."""
    if n_keys is None:
        return WINDOW_MAX
    return min(WINDOW_MAX, math.log(max(n_keys, 1)) - math.log(WINDOW_TOLERANCE))


def key_screen(features: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """fp32 screen columns ``[k', ‖k'‖², 1]ᵀ`` ``(F + 2, K)`` of keys ``(K, F)``, with ``K₁``, ``K₂``."""
    centred = features - centre
    ksq = (centred * centred).sum(dim=1)
    top = float(ksq.max()) if ksq.numel() else 0.0
    side = torch.cat([centred, ksq[:, None], torch.ones_like(ksq)[:, None]], dim=1)
    return side.to(torch.float32).T.contiguous(), top**0.5, 0.5 * top


def screen_chunks(y32: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """The screen columns ``y32`` ``(F + 2, K)`` cut into contiguous pieces of at most :data:`SCREEN_KEYS`
    keys, one fp32 product each: ``(index of its first key, its columns)``."""
    if y32.shape[1] <= SCREEN_KEYS:
        return [(0, y32)]
    return [(start, y32[:, start : start + SCREEN_KEYS].contiguous()) for start in range(0, y32.shape[1], SCREEN_KEYS)]


def _screened_in(rows32: torch.Tensor, screens: list[tuple[int, torch.Tensor]], buffers: _Buffers) -> torch.Tensor:
    """Indices (ascending, int64) of the block's keys screened in for the tile whose fp32 screen rows are
    ``rows32``: those whose column maximum ``max_q s̃_{qk}`` is ``≥ 0``, one product per piece of keys."""
    kept = []
    for start, y in screens:
        scores = buffers.get(rows32.shape[0], y.shape[1], torch.float32)
        torch.mm(rows32, y, out=scores)
        kept.append((scores.amax(dim=0) >= 0).nonzero().flatten().add_(start))
    return kept[0] if len(kept) == 1 else torch.cat(kept)


def _ball_thresholds(queries: Queries, balls: slice, k1: float, k2: float, c: float, n: int) -> bool:
    """Write ``-τ`` of the balls ``balls`` into their screen rows (module docstring, "Pre-screen by
    balls") from their rows' current θ; False where a ball cannot be bounded in fp32 (a row without θ
    yet has an infinite radius).

    Each ball's radius ``R = max_q (r_q + ‖q' - c‖)`` is inflated by :data:`BALL_SLACK`, and ``r_q²``
    by that fraction of ``‖q'‖² + 2|θ_q|``, both far above their float64 roundings.
    """
    size = queries.ball_size
    rows = slice(balls.start * size, min(balls.stop * size, queries.n))
    theta = queries.theta[rows]
    csq = queries.centred_sq[rows]
    reach = (csq - 2.0 * theta + BALL_SLACK * (csq + 2.0 * theta.abs())).clamp_(min=0.0).sqrt_()
    spread = reach.new_zeros((balls.stop - balls.start) * size)
    spread[: reach.numel()] = reach + queries.ball_offset[rows]
    radius = spread.view(-1, size).amax(dim=1) * (1.0 + BALL_SLACK)
    theta_ball = 0.5 * (queries.ball_centre_sq[balls] - radius * radius)
    magnitude = queries.ball_centre_norm[balls] * k1 + k2 + theta_ball.abs()
    if not bool((magnitude < FP32_SAFE).all()):
        return False
    queries.ball_rows[balls, -1] = -(theta_ball - screen_error(c, n, magnitude))
    return True


def _probe(queries: Queries, sl: slice, screens: list[tuple[int, torch.Tensor]], base: torch.Tensor, c: float,
           n: int, buffers: _Buffers) -> None:
    """First lower bounds ``M`` of the rows ``sl``: with τ = 0, their fp32 row maxima minus the bound."""
    queries.screen_rows[sl, -1] = 0.0
    probe = None
    for _, y in screens:
        scores = buffers.get(sl.stop - sl.start, y.shape[1], torch.float32)
        torch.mm(queries.screen_rows[sl], y, out=scores)
        best = scores.amax(dim=1)
        probe = best if probe is None else torch.maximum(probe, best)
    probe = probe.to(torch.float64)
    probe = (probe - screen_error(c, n, base) + queries.rho[sl]) * queries.inv_var[sl]
    queries.max_logit[sl] = torch.maximum(queries.max_logit[sl], probe)


def _thresholds(queries: Queries, sl: slice, base: torch.Tensor, c: float, n: int) -> bool:
    """Write ``-τ`` of the rows ``sl`` into their screen rows; False where fp32 could overflow."""
    theta = (queries.max_logit[sl] - queries.window) * queries.var[sl] - queries.rho[sl]
    magnitude = base + theta.abs()
    if not bool((magnitude < FP32_SAFE).all()):
        return False
    # rounded to fp32: an input rounding, covered by the bound
    queries.screen_rows[sl, -1] = -(theta - screen_error(c, n, magnitude))
    queries.theta[sl] = theta
    return True


def _raise_max(queries: Queries, sl: slice, logits: torch.Tensor) -> None:
    """Raise the running lower bounds ``M`` of the tile's queries to their best exact logits."""
    queries.max_logit[sl] = torch.maximum(queries.max_logit[sl], logits.amax(dim=1))


def _dense_tile(queries: Queries, sl: slice, k_aug: torch.Tensor, keys: KeyBlock, consumer: Consumer,
                buffers: _Buffers) -> None:
    """Every key of the block for the (sorted) tile ``sl``, scored by the float64 product."""
    rows = sl.stop - sl.start
    logits = buffers.get(rows, k_aug.shape[0], torch.float64)
    torch.mm(queries.sorted_augmented[sl], k_aug.T, out=logits)
    _raise_max(queries, sl, logits)
    _count(rows * k_aug.shape[0], rows * k_aug.shape[0], dense=True)
    consumer.update(sl, logits, keys.values, first_owner=keys.first_owner, group=keys.group)


def _attend_float64(queries: Queries, keys: KeyBlock, consumer: Consumer, query_block: int) -> None:
    """The reference path: every pair by one dense float64 product (rows in the queries' tile order)."""
    k_aug_t = keys.augmented().T
    q_aug = queries.sorted_augmented
    n_q, n_k = q_aug.shape[0], k_aug_t.shape[1]
    buffer = torch.empty(min(query_block, n_q) * n_k, dtype=torch.float64, device=q_aug.device)
    for start in range(0, n_q, query_block):
        stop = min(start + query_block, n_q)
        logits = buffer[: (stop - start) * n_k].view(stop - start, n_k)
        torch.mm(q_aug[start:stop], k_aug_t, out=logits)
        _count((stop - start) * n_k, (stop - start) * n_k, dense=True)
        consumer.update(slice(start, stop), logits, keys.values, first_owner=keys.first_owner, group=keys.group)


def training_blocks(train: torch.Tensor, images_per_block: int, device: torch.device,
                    progress: bool, desc: str) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(first_index, images)`` float64 blocks of the training set, moved to ``device``."""
    starts = range(0, train.shape[0], images_per_block)
    for start in progress_bar(starts, enabled=progress, desc=desc, unit="block"):
        yield start, train[start : start + images_per_block].to(device=device, dtype=torch.float64)


def images_per_block(keys_per_image: int, key_block: int) -> int:
    """How many whole training images make a key block of about ``key_block`` keys."""
    return max(1, key_block // max(1, keys_per_image))


KeyBuilder = Callable[[int, torch.Tensor], KeyBlock]
