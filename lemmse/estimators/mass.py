r"""99 %-mass counts folded into the estimate pass (no pass of their own), with a stated error bound.

A query's weights are ``w_k = e^{l_k - log Z}`` (``Σ_k w_k = 1``, ``K`` keys); its 99 %-mass count
is the smallest ``k*`` such that the ``k*`` largest weights sum to at least ``f = 0.99``.

**Window.** The keys with ``l < log Z - W``, ``W = log K - log(1 - f) + LO_MARGIN``, hold less
than ``1 - f`` together (each weighs less than ``(1 - f)/K``), so the crossing never lies among
them. ``log Z`` is at least the running maximum ``m`` of the logits seen so far: a key with
``l < m - W`` can be dropped the moment it is seen, before ``log Z`` is known.

**Cut.** Tighter: the running ``log Z_t = m + log S`` of the keys seen so far (the accumulator's
normaliser after the tile) only grows towards the final ``log Z``, and at large σ, where many keys
share the weight, lies far above ``m`` (up to ``log K``). A key with ``l < log Z_t - W`` has
``l < log Z - W`` and is skipped (never binned; per-image maxima skip whole (query, image) pairs).
Such a key (weight ``< e^{-W} = (1 - f) e^{-LO_MARGIN} / K``) never lies in the crossing bin or
above it: if it lay in bin ``c``, every key of bin ``c`` and below would weigh less than ``e^δ``
times it (bins are at most ``δ`` wide), and these at most ``K`` keys would hold less than
``(1 - f) e^{δ - LO_MARGIN} < 1 - f``; but the bins above ``c``, hence above the crossing bin, hold
less than ``f``. So the count and both bounds read only bins whose keys all lie above the cut. The margin ``LO_MARGIN - δ ≥ 0.002`` covers the rounding of the running
``Z_t`` (float32 sums, relative ~1e-6) and of the cut's threshold, which is compared with the bits
of ``v`` (:meth:`MassHistogram.update`).

**One histogram per query, filled from the accumulator's own weights during the estimate pass.**
Each tile's weights ``e^{l - m}`` (the accumulator's float32 or float64 exponentials) are turned
into ``v = e^{l - A}·2^E`` by one multiplication per query, ``A`` the query's *anchor*, a multiple
of ``log 2`` at most :data:`HEADROOM` + ``log 2`` above ``m``, and ``E`` a power keeping every
``v`` a normal float (126 in float32, 900 in float64). A key's bin is read from the bits of ``v``:
its exponent and the top ``HI`` bits of its mantissa, i.e. ``v ∈ [2^e (1 + h/2^HI),
2^e (1 + (h + 1)/2^HI))``: ``2^HI`` bins per octave, of log-width at most ``δ = log(1 + 2^-HI)``,
with ``HI`` (:func:`hi_bits`, 7 or 8) the fewest bits for which ``δ ≤ W/2048``, the widest bin of
the former two-pass counter (``δ ≈ 0.0039`` below ~70 000 keys, ≈ 0.0078 above). With float32
weights (and fewer than 2^20 keys) a key adds ``2^S + (its mantissa)`` to one int64 per bin
(``S``: :attr:`MassHistogram.count_bits`): the sum's high part is the bin's count, its low part
the sum of the mantissas, from which the mass (exactly the sum of the keys' ``v``) follows; sums
over the bins of one octave decode the same way, so the crossing is searched on group sums read
in one pass. One integer scatter per key, every sum exact. With float64 weights (the checking path) the bin
holds an int32 count and the float64 sum of the ``v``. When ``m`` passes the anchor, the anchor
moves up by whole octaves: ``v`` halves per octave, which moves every key ``2^HI`` bins down
and leaves its mantissa unchanged, so the row shifts by whole columns and nothing is rounded;
bins shifted past the window's bottom (which lies more than ``W`` below ``m``) are dropped.
Keys below the window or the cut go to discarded underflow columns (the numba kernel skips them);
per-image maxima tell which (query, image) pairs hold any key above the cut, and when few do (small
σ) only those are histogrammed.

**Bound** (read after the pass against the estimate's ``log Z``). The bins above the crossing
bin (the first, from the top, whose cumulative mass reaches ``f``) are exact: count ``c_above``,
mass ``m_above``. Inside the crossing bin (``n`` keys, mass ``μ``, weights in ``[a e^{-δ}, a)``),
the remaining mass ``R = f - m_above`` needs between

.. math:: k_{lo} = \lceil R / a \rceil \quad\text{and}\quad k_{hi} = \lceil R / (μ/n) \rceil

keys (the ``k`` largest of ``n`` weights average at least their mean ``μ/n`` and less than the
bin's top ``a``). The reported count is ``c_above + k_hi``: an **upper bound** whose keys hold at
least 99 % of the weight, exact when ``k_lo = k_hi`` (always when the crossing bin holds one
key), otherwise too large by less than ``1 + (e^δ - 1)·n``, ``δ = log(1 + 2^-HI) ≤ W/2048``
for every query (the former counter's guarantee, ``(u_max - lo)/2048 ≤ W/2048``, holds: for
``K = 76 800``, ``δ = 0.0039`` against its 0.0078). The ceilings allow a relative
:data:`ROUNDING` of ``1e-12``.

The weights binned and summed are the accumulator's own: ``f`` is measured against its ``Z``,
and both carry the rounding of the weights' ``dtype`` (relative ~1e-6 in float32, ~1e-15 in
float64); the histogram adds no rounding of its own in float32 and ~1e-16 per addition in float64.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from lemmse.estimators import binning, tile_threads

#: The former two-pass counter split its window ``W`` into this many bins: a bin is never wider
#: than ``W / REFERENCE_BINS`` here either (:func:`hi_bits`).
REFERENCE_BINS = 2048
#: Fewest mantissa bits that, with the exponent, name a key's bin (2^bits bins per octave).
MIN_HI_BITS = 7
#: Headroom of the anchor above the running maximum (log-units): the anchor moves when the
#: maximum passes it, to a multiple of log 2 between HEADROOM and HEADROOM + log 2 above it.
HEADROOM = 1.0
#: Extra log-width below ``log((1 - f)/K)`` so that rounding never puts the crossing below the window.
LO_MARGIN = 0.01
#: Underflow columns before the window: keys below the window are spread over them (one column
#: taking them all would serialise the scatter on its address).
UNDERFLOW = 64
#: Below this fraction of (query, image) pairs holding a key inside the window, only those pairs
#: are histogrammed (gathered); above it, every key of the tile.
LIVE_FRACTION = 0.2
#: Below this many keys per row, as a fraction of a row's columns, reading whole rows into cache
#: first would cost more than the keys' own random accesses: the PyTorch path scatters such a tile
#: flat, the numba kernel skips its in-order row read (``prefetch`` of
#: :func:`lemmse.estimators.binning.bin_rows`; from it on, denoising σ = 0.2, 16 images: binning
#: 0.69 → 0.45 s, every diagnostic 2.00 → 1.69× the estimate alone).
SPARSE_KEYS = 0.25
#: Rows of a tile histogrammed at a time: their histogram rows (~56 kB each) and scratch fit in
#: a core's L2 cache.
CHUNK_ROWS = 16
#: Columns per group when the crossing is searched (group sums first, then one group's columns).
GROUP = 64
#: Read a chunk's histogram rows in one sequential pass before scattering into them (CPU): the
#: scatter's random accesses then hit cache instead of each waiting on memory (measured 6x faster).
PREFETCH = True
#: Relative slack of the ceilings of the bound (mass sums and their scaling are rounded).
ROUNDING = 1e-12


def _row_ids(rows: slice, q: int, device: torch.device) -> torch.Tensor:
    """The ``q`` query indices of the contiguous run ``rows``."""
    return torch.arange(rows.start, rows.start + q, device=device)


@dataclass(frozen=True)
class _Float:
    """Bit layout of the weights' dtype and the power ``2^scale`` that keeps every ``v`` normal."""

    mantissa: int
    bias: int
    scale: int
    bits: torch.dtype


_FLOATS = {torch.float32: _Float(23, 127, 126, torch.int32), torch.float64: _Float(52, 1023, 900, torch.int64)}


def window_width(n_keys: int, fraction: float) -> float:
    """``W = log K - log(1 - f) + LO_MARGIN``: keys more than ``W`` below ``log Z`` never matter."""
    return math.log(max(n_keys, 1)) - math.log(1.0 - fraction) + LO_MARGIN


def hi_bits(n_keys: int, fraction: float = 0.99) -> int:
    """Mantissa bits of a bin: the fewest (at least MIN_HI_BITS) whose widest bin, ``log(1 + 2^-bits)``,
    is at most ``W / REFERENCE_BINS`` (7 for ``K`` ≳ 70 000 keys, 8 below)."""
    bits = MIN_HI_BITS
    while math.log1p(2.0**-bits) > window_width(n_keys, fraction) / REFERENCE_BINS:
        bits += 1
    return bits


def bin_width(n_keys: int, fraction: float = 0.99) -> float:
    """Largest log-width ``δ`` of a bin, ``log(1 + 2^-hi_bits)``."""
    return math.log1p(2.0 ** -hi_bits(n_keys, fraction))


def histogram_columns(n_keys: int, fraction: float = 0.99) -> int:
    """Columns of a row: whole octaves covering ``W``, the headroom and one octave of rounding, then
    the underflow ones (8 bytes each with float32 weights, 12 with float64)."""
    octaves = math.ceil((window_width(n_keys, fraction) + HEADROOM + math.log(2)) / math.log(2)) + 1
    return -(-(octaves << hi_bits(n_keys, fraction)) // GROUP) * GROUP + UNDERFLOW


class MassHistogram:
    """Per-query histogram of the top weights, fed by :class:`StreamingSoftmax` tile by tile.

    ``n_keys`` is the number of keys each query meets (it fixes the window ``W``); ``dtype`` that
    of the weights it is fed. The accumulator calls :meth:`update` with every tile's weights;
    after the pass, :meth:`bounds` gives ``(k_lo, k_hi)`` and :meth:`counts` the reported ``k_hi``.
    With float32 weights on CPU the binning and the row shifts run as one-pass numba kernels
    (:mod:`lemmse.estimators.binning`); elsewhere as PyTorch passes filling the same window columns.
    """

    def __init__(self, n_queries: int, n_keys: int, *, fraction: float = 0.99,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
        if dtype not in _FLOATS:
            raise ValueError(f"weights must be float32 or float64, got {dtype}")
        if n_keys >= 2**31:
            raise ValueError(f"{n_keys} keys per query overflow the bin counts")
        self.fraction = fraction
        self.width = window_width(n_keys, fraction)
        self.float = _FLOATS[dtype]
        self.hi_bits = hi_bits(n_keys, fraction)
        #: largest log-width of a bin
        self.delta = math.log1p(2.0**-self.hi_bits)
        self.low_bits = self.float.mantissa - self.hi_bits
        columns = histogram_columns(n_keys, fraction)
        self.n_bins = columns - UNDERFLOW
        # the window: whole octaves, the top one that of v = 2^scale (the largest v), so that every
        # group of GROUP bins lies within one octave
        top_octave = (self.float.bias + self.float.scale) << self.hi_bits
        #: column of a bin = (bits of v >> low_bits) - offset; the window's bins come after the underflow
        self.offset = top_octave + (1 << self.hi_bits) - self.n_bins - UNDERFLOW
        #: anchor per query in octaves (A = anchor·log 2); -inf before the first key
        self.anchor = torch.full((n_queries,), -math.inf, dtype=torch.float64, device=device)
        #: float32 weights, fewer than 2^20 keys: count·2^count_bits + mantissas in one int64 per bin
        #: (K keys of at most 2^count_bits + 2^mantissa each never reach 2^63)
        self.packed = dtype == torch.float32 and n_keys < 2**20
        if self.packed:
            self.count_bits = self.float.mantissa + max(1, math.ceil(math.log2(n_keys + 1)))
            self.sums = torch.zeros(n_queries, columns, dtype=torch.int64, device=device)
        else:
            self.count = torch.zeros(n_queries, columns, dtype=torch.int32, device=device)
            self.mass = torch.zeros(n_queries, columns, dtype=torch.float64, device=device)
        self._scratch = threading.local()  # per thread: tiles may run concurrently (tile_threads)

    # ------------------------------------------------------------------------------------------
    # filling
    # ------------------------------------------------------------------------------------------

    def update(self, rows: slice, weights: torch.Tensor, shift: torch.Tensor,
               image_max: torch.Tensor | None = None, group: int = 1, log_z: torch.Tensor | None = None) -> None:
        """Histogram one tile: ``weights = e^{l - shift}`` ``(q, k)`` (overwritten), ``shift`` ``(q,)``
        the running maximum including this tile; ``rows`` the queries (a contiguous run of the
        state's rows); ``image_max`` ``(q, k/group)``, if given, the largest logit of each image (``group``
        consecutive keys); ``log_z`` ``(q,)`` float64, if given, the running ``log Σ e^l`` including this
        tile: keys with ``l < log_z - W`` are skipped (module docstring, "Cut"; without it the cut is
        ``shift - W``). Any subset of a block's keys may come: a key's bin depends on its weight only."""
        q, k = weights.shape
        self._raise_anchor(rows, shift)
        # v = weights · e^{m - A} · 2^scale: the keys' masses, as normal floats
        anchor = self.anchor[rows] * math.log(2)
        factor = (torch.exp(shift - anchor) * 2.0**self.float.scale).to(weights.dtype)
        cut = (shift if log_z is None else log_z) - self.width
        # the cut in v, compared with v's bits (monotone in v ≥ 0): the same keys skipped on every path
        floor = (torch.exp(cut - anchor) * 2.0**self.float.scale).to(weights.dtype).view(self.float.bits)
        if image_max is not None:
            live = image_max >= cut[:, None]
            n_live = int(live.count_nonzero())
            if n_live == 0:
                return
            if n_live < LIVE_FRACTION * live.numel():
                row, image = live.nonzero(as_tuple=True)
                v = weights.view(q, -1, group)[row, image].mul_(factor[row, None])  # (n_live, group)
                index = self._columns(v, floor[row], "live").add_(_row_ids(rows, q, weights.device)[row][:, None]
                                                                  * self._width())
                self._add(index.view(-1), v.view(-1))
                return
        if self.packed and binning.available(weights.device):  # one fused pass (lemmse.estimators.binning)
            binning.bin_rows(self.sums, rows.start, weights.mul_(factor[:, None]), floor,
                             base=self.offset << self.low_bits, low=self.low_bits, mask=(1 << self.float.mantissa) - 1,
                             one=1 << self.count_bits, underflow=UNDERFLOW,
                             prefetch=k >= SPARSE_KEYS * self._width())
            return
        if k < SPARSE_KEYS * self._width():  # few keys per row (a screened tile): one flat scatter
            v = weights.mul_(factor[:, None])
            index = self._columns(v, floor, "sparse").add_(_row_ids(rows, q, weights.device)[:, None] * self._width())
            self._add(index.view(-1), v.view(-1))
            return
        for start in range(0, q, CHUNK_ROWS):  # row chunks: the scratch stays in cache
            stop = min(start + CHUNK_ROWS, q)
            v = weights[start:stop].mul_(factor[start:stop, None])
            self._scatter(slice(rows.start + start, rows.start + stop), self._columns(v, floor[start:stop], "dense"), v)

    @property
    def _buffers(self) -> dict[str, torch.Tensor]:
        """The calling thread's reusable scratch tensors."""
        return tile_threads.scratch(self._scratch)

    def _width(self) -> int:
        return self.n_bins + UNDERFLOW

    def _columns(self, v: torch.Tensor, floor: torch.Tensor, name: str) -> torch.Tensor:
        """Column of every ``v`` ``(r, c)``: from its bits; below the window or the cut (bits below
        ``floor`` ``(r,)``), one of the underflow columns."""
        bits = v.view(self.float.bits)
        base = torch.sub(bits, self.offset << self.low_bits, out=self._buffer(name + "bits", v.shape, bits.dtype))
        index = torch.bitwise_right_shift(base, self.low_bits, out=self._buffer(name + "index", v.shape, torch.int64))
        underflow = self._underflow(v.shape[1])
        index = torch.maximum(index, underflow, out=index)
        return torch.where(bits < floor[:, None], underflow, index, out=index)

    def _values(self, v: torch.Tensor) -> torch.Tensor:
        """Packed: ``2^count_bits + mantissa of v`` per key (int64)."""
        out = self._buffer("values", v.shape, torch.int64)
        torch.bitwise_and(v.view(self.float.bits), (1 << self.float.mantissa) - 1, out=out)
        return out.add_(1 << self.count_bits)

    def _scatter(self, rows: slice, index: torch.Tensor, v: torch.Tensor) -> None:
        if self.packed:
            target = self.sums[rows]
            if PREFETCH and target.device.type == "cpu":
                target.amax()  # the value is not needed: the read brings the rows into cache
            target.scatter_add_(1, index, self._values(v))
        else:
            self.count[rows].scatter_add_(1, index, self._ones(v.numel()).view(v.shape))
            self.mass[rows].scatter_add_(1, index, v.to(torch.float64))

    def _add(self, index: torch.Tensor, v: torch.Tensor) -> None:
        if self.packed:
            self.sums.view(-1).index_add_(0, index, self._values(v))
        else:
            self.count.view(-1).index_add_(0, index, self._ones(v.numel()))
            self.mass.view(-1).index_add_(0, index, v.to(torch.float64))

    def _raise_anchor(self, rows: slice, shift: torch.Tensor) -> None:
        """Move the anchor of every row whose maximum passed it (whole octaves; rows shift down)."""
        if self.packed and binning.available(shift.device):  # one call, in place (lemmse.estimators.binning)
            binning.raise_rows(self.sums, self.anchor, rows.start, shift, hi_bits=self.hi_bits, n_bins=self.n_bins,
                               headroom=HEADROOM)
            return
        anchor = self.anchor[rows]
        moved = (shift > anchor * math.log(2)).nonzero().squeeze(1)
        if moved.numel() == 0:
            return
        new = torch.ceil((shift[moved] + HEADROOM) / math.log(2))
        octaves = new - anchor[moved]  # inf for a row's first keys
        r = _row_ids(rows, shift.shape[0], shift.device)[moved]
        far = octaves * (1 << self.hi_bits) >= self.n_bins
        near = ~far
        if bool(near.any()):
            rn, steps = r[near], octaves[near]
            # v halves per octave: a key moves 2^HI bins down; column c takes column c + s
            moves = steps.to(torch.long) << self.hi_bits
            cols = self._width()
            source = torch.arange(cols, device=rn.device)[None, :] + moves[:, None]
            valid = source < cols
            source.clamp_(max=cols - 1)
            if self.packed:
                self.sums[rn] = self.sums[rn].gather(1, source) * valid
            else:
                self.count[rn] = self.count[rn].gather(1, source) * valid
                self.mass[rn] = self.mass[rn].gather(1, source) * valid * torch.exp2(-steps)[:, None]
        far &= torch.isfinite(anchor[moved])  # a row's first keys: its histogram is still empty
        if bool(far.any()):
            for table in (self.sums,) if self.packed else (self.count, self.mass):
                table[r[far]] = 0
        self.anchor[r] = new

    def _underflow(self, k: int) -> torch.Tensor:
        """``(k,)`` int64: ``j mod UNDERFLOW``, the floor of key ``j``'s column."""
        buf = self._buffers.get("underflow")
        if buf is None or buf.numel() < k:
            buf = self._buffers["underflow"] = torch.arange(k, device=self.anchor.device) % UNDERFLOW
        return buf[:k]

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A reusable ``shape`` scratch tensor (no allocation or page faults per tile)."""
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < size or buf.dtype != dtype:
            buf = self._buffers[name] = torch.empty(size, dtype=dtype, device=self.anchor.device)
        return buf[:size].view(shape)

    def _ones(self, n: int) -> torch.Tensor:
        """``n`` int32 ones (one buffer, grown on demand): each key's contribution to its bin's count."""
        buf = self._buffers.get("ones")
        if buf is None or buf.numel() < n:
            buf = self._buffers["ones"] = torch.ones(n, dtype=torch.int32, device=self.anchor.device)
        return buf[:n]

    # ------------------------------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------------------------------

    def _unit(self, column: torch.Tensor) -> torch.Tensor:
        """``2^(exponent - bias - mantissa)`` of the window bins ``column`` (0 = lowest): ``v = unit·(2^mantissa + m)``."""
        exponent = (column + self.offset + UNDERFLOW) >> self.hi_bits
        return torch.exp2((exponent - self.float.bias - self.float.mantissa).to(torch.float64))

    def _top(self, column: torch.Tensor) -> torch.Tensor:
        """Upper edge of ``v`` in the window bins ``column`` (float64)."""
        hi = (column + self.offset + UNDERFLOW) & ((1 << self.hi_bits) - 1)
        return self._unit(column) * 2.0**self.float.mantissa * (1.0 + (hi + 1) / 2.0**self.hi_bits)

    def _decode(self, sums: torch.Tensor, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Count and mass (sum of ``v``) of packed sums over bins of one octave (``unit`` broadcast)."""
        count = sums >> self.count_bits
        mantissas = sums & ((1 << self.count_bits) - 1)
        return count, (count.to(torch.float64) * 2.0**self.float.mantissa + mantissas.to(torch.float64)) * unit

    def _groups(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Count (int64) and mass (float64, sum of ``v``) of every group of GROUP window bins ``(Q, G)``,
        lowest first: one pass over the table (a group lies within one octave, where packed sums add)."""
        q, groups = self.anchor.shape[0], self.n_bins // GROUP
        if self.packed:
            sums = self.sums[:, UNDERFLOW:].unflatten(1, (groups, GROUP)).sum(dim=2)
            return self._decode(sums, self._unit(torch.arange(groups, device=sums.device) * GROUP))
        count = self.count[:, UNDERFLOW:].unflatten(1, (groups, GROUP)).sum(dim=2, dtype=torch.int64)
        return count, self.mass[:, UNDERFLOW:].unflatten(1, (groups, GROUP)).sum(dim=2)

    def _bins(self, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Count and mass of the GROUP bins of one group per row ``(Q, GROUP)``."""
        columns = UNDERFLOW + group[:, None] * GROUP + torch.arange(GROUP, device=group.device)
        if self.packed:
            return self._decode(self.sums.gather(1, columns), self._unit(columns - UNDERFLOW))
        return self.count.gather(1, columns).to(torch.int64), self.mass.gather(1, columns)

    def bounds(self, log_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k_lo, k_hi)`` ``(Q,)`` int64: the exact count ``k*`` lies in ``[k_lo, k_hi]``.

        ``log_z`` ``(Q,)`` float64: the estimate's ``log Σ_k e^{l_k}``. The crossing bin is the
        first from the top whose cumulative mass reaches ``f`` (the lowest bin if rounding left
        none), or the lowest non-empty bin if that comes first; it is searched on the sums of
        :data:`GROUP` bins, then inside one group.
        """
        groups = self.n_bins // GROUP
        # v = w·Z·e^{-A}·2^scale: normalised weights w = v·norm
        norm = torch.exp(self.anchor * math.log(2) - log_z.to(torch.float64) - self.float.scale * math.log(2))
        group_count, group_mass = self._groups()
        group_mass = group_mass * norm[:, None]
        # mass and count of the groups above each group (the heavier ones)
        above_mass = group_mass.flip(1).cumsum(dim=1).flip(1) - group_mass
        above_count = group_count.flip(1).cumsum(dim=1).flip(1) - group_count
        offsets = torch.arange(GROUP, device=group_mass.device)
        groups_index = torch.arange(groups, device=group_mass.device)

        def taken(table: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return table.gather(1, g[:, None]).squeeze(1)

        # the highest group whose cumulative mass from the top reaches f, else group 0
        g = (((above_mass + group_mass) >= self.fraction).to(torch.int64) * groups_index).amax(dim=1)
        m = self._bins(g)[1] * norm[:, None]
        inside = (taken(above_mass, g)[:, None] + m.flip(1).cumsum(dim=1).flip(1)) >= self.fraction
        crossing = g * GROUP + (inside.to(torch.int64) * offsets).amax(dim=1)
        # the lowest non-empty bin
        g = torch.where(group_count > 0, groups_index, groups).amin(dim=1).clamp(max=groups - 1)
        c = self._bins(g)[0]
        lowest = g * GROUP + torch.where(c > 0, offsets, GROUP).amin(dim=1).clamp(max=GROUP - 1)
        j = torch.maximum(crossing, lowest)

        g, o = torch.div(j, GROUP, rounding_mode="floor"), j % GROUP
        c, m = self._bins(g)
        m = m * norm[:, None]
        higher = offsets[None, :] > o[:, None]
        n_bin = c.gather(1, o[:, None]).squeeze(1).to(torch.float64)
        m_bin = m.gather(1, o[:, None]).squeeze(1)
        mass_above = taken(above_mass, g) + (m * higher).sum(dim=1)
        count_above = taken(above_count, g) + (c * higher).sum(dim=1)
        rest = torch.clamp(self.fraction - mass_above, min=0.0)
        top_weight = self._top(j) * norm
        n_safe = n_bin.clamp(min=1.0)
        k_hi = torch.ceil(rest / (m_bin / n_safe) * (1.0 - ROUNDING)).clamp(min=1.0)
        k_hi = torch.where(m_bin > 0, torch.minimum(k_hi, n_safe), n_safe)
        k_lo = torch.minimum(torch.ceil(rest / top_weight * (1.0 - ROUNDING)).clamp(min=1.0), k_hi)
        return count_above + k_lo.to(torch.int64), count_above + k_hi.to(torch.int64)

    def counts(self, log_z: torch.Tensor) -> torch.Tensor:
        """The reported 99 %-mass counts ``(Q,)`` int64: the upper bound ``k_hi`` (see module docstring)."""
        return self.bounds(log_z)[1]
