r"""The 99 %-mass histogram's binning and row shifts on CPU, each one pass (numba kernels).

:class:`lemmse.estimators.mass.MassHistogram` bins every key of a tile by the bits of its scaled
weight ``v`` (float32): column ``c = (bits(v) - base) >> low`` and adds ``2^S + (bits(v) & (2^23 - 1))``
to the row's int64 sum in that column. Keys below the window (``c < U``, the underflow columns,
which nothing reads) are spread by PyTorch over ``U`` columns and skipped here, as are keys below
the cut (bits below the row's ``floor``: weights below ``e^{-W}`` of the running normaliser). In PyTorch that is
six passes over the tile (subtract, shift, maximum, mask, add, scatter), each writing a tile-sized
temporary; here it is one loop that reads each key once and adds into its row (a row that takes
many keys is read once in order first: ``prefetch`` of :func:`bin_rows`). The window's
columns are bit-identical to the PyTorch path's (``tests/test_estimator_mass.py`` runs both).

When a row's running maximum passes its anchor, the anchor moves up by ``o`` whole octaves and the
row's columns move ``s = o·2^HI`` down (column ``c`` takes column ``c + s``, the top ``s`` become
empty; a row shifted past its width is cleared): :func:`raise_rows` does that for a tile's rows in
one call, in place, where PyTorch took a dozen small operations per tile and gathered each moved
row through a tile of indices.

Rows are split between threads (``prange``): a tile's rows are distinct queries, so no two
threads add into the same row. The thread count follows PyTorch's (the job's ``threads``). Inside
a tile worker (:mod:`lemmse.estimators.tile_threads`), and on one thread, the same row kernel
runs from a serial loop: numba's workqueue layer must not be entered by two threads at once.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from lemmse.estimators import tile_threads

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the PyTorch path stays correct without it
    numba = None
else:
    # numba's own thread pool, not OpenMP: its OpenMP layer shares PyTorch's runtime and, once
    # launched, resets the thread count PyTorch runs with (a one-thread job would run on all cores)
    numba.config.THREADING_LAYER = "workqueue"

#: Use the fused kernel for packed float32 histograms on CPU (the PyTorch path otherwise).
ENABLED = numba is not None
#: int64 values per 64-byte cache line.
LINE = 8
#: The anchors are in octaves: ``A = anchor·log 2``.
LN2 = math.log(2)


if numba is not None:
    @numba.njit(cache=True, nogil=True)
    def _read_row(row):  # pragma: no cover - compiled
        """One value per cache line of ``row``, summed (returned, so that the reads are kept)."""
        total = 0
        for c in range(0, row.shape[0], LINE):
            total += row[c] & 1
        return total

    @numba.njit(cache=True, nogil=True)
    def _bin_row(row, bits, cut, base, low, mask, one, first_column):  # pragma: no cover - compiled
        n = row.shape[0]
        above = 0
        for j in range(bits.shape[0]):
            b = np.int64(bits[j])
            if b < cut:  # below the cut (a weight below e^{-W} of the running Z): skipped
                continue
            c = (b - base) >> low
            if c < first_column:  # below the window: the underflow columns are never read, skip it
                continue
            if c >= n:  # above the row (never: the anchor lies above the maximum); counted, kept in bounds
                above += 1
                c = n - 1
            row[c] += (b & mask) + one
        return above

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _bin_rows(sums, first_row, bits, floor, base, low, mask, one, first_column, prefetch):  # pragma: no cover
        above = 0
        read = 0
        for i in numba.prange(bits.shape[0]):
            if prefetch:
                read += _read_row(sums[first_row + i])
            above += _bin_row(sums[first_row + i], bits[i], floor[i], base, low, mask, one, first_column)
        return above, read

    @numba.njit(cache=True, nogil=True)
    def _bin_rows_serial(sums, first_row, bits, floor, base, low, mask, one, first_column, prefetch):  # pragma: no cover
        above = 0
        read = 0
        for i in range(bits.shape[0]):
            if prefetch:
                read += _read_row(sums[first_row + i])
            above += _bin_row(sums[first_row + i], bits[i], floor[i], base, low, mask, one, first_column)
        return above, read

    @numba.njit(cache=True, nogil=True)
    def _shift_row(row, s):  # pragma: no cover - compiled
        n = row.shape[0]
        for c in range(n - s):
            row[c] = row[c + s]
        for c in range(max(n - s, 0), n):
            row[c] = 0

    @numba.njit(cache=True, nogil=True)
    def _raise_row(row, anchor, shift, hi_bits, n_bins, headroom):  # pragma: no cover - compiled
        """The row's anchor after its maximum rose to ``shift`` (the row moved down or cleared)."""
        if not shift > anchor * LN2:
            return anchor
        new = np.ceil((shift + headroom) / LN2)
        octaves = new - anchor  # inf for a row's first keys: its histogram is still empty
        if octaves * (1 << hi_bits) >= n_bins:
            if np.isfinite(anchor):
                row[:] = 0
        else:
            _shift_row(row, np.int64(octaves) << hi_bits)
        return new

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _raise_rows(sums, anchor, first_row, shift, hi_bits, n_bins, headroom):  # pragma: no cover - compiled
        for i in numba.prange(shift.shape[0]):
            r = first_row + i
            anchor[r] = _raise_row(sums[r], anchor[r], shift[i], hi_bits, n_bins, headroom)

    @numba.njit(cache=True, nogil=True)
    def _raise_rows_serial(sums, anchor, first_row, shift, hi_bits, n_bins, headroom):  # pragma: no cover
        for i in range(shift.shape[0]):
            r = first_row + i
            anchor[r] = _raise_row(sums[r], anchor[r], shift[i], hi_bits, n_bins, headroom)


def compile_kernels() -> list[str]:
    """Compile every kernel for the argument types :func:`bin_rows` and :func:`raise_rows` pass (C-contiguous
    int64 sums, int32 weight bits, int64 floors, float64 anchors and shifts, Python ints, a bool) into
    numba's on-disk cache, and return their names; ``[]`` without numba.

    ``scripts/setup_env.sh`` runs it, so that the first mass pass of a fresh clone loads the kernels
    instead of compiling them (about 2 s, once, inside the first estimator shard job). A kernel that
    later meets other types compiles again: ``tests/test_estimator_mass.py`` checks that a real mass
    pass adds no signature.
    """
    if numba is None:
        return []
    sums, anchor = np.zeros((1, 2 * LINE), np.int64), np.full(1, -np.inf)
    bits, floor, shift = np.zeros((1, 1), np.int32), np.zeros(1, np.int64), np.zeros(1, np.float64)
    for kernel in (_bin_rows, _bin_rows_serial):
        kernel(sums, 0, bits, floor, 0, 0, 0, 0, 0, False)
    for kernel in (_raise_rows, _raise_rows_serial):
        kernel(sums, anchor, 0, shift, 0, 2 * LINE, 0.0)
    return [k.__name__ for k in (_bin_rows, _bin_rows_serial, _raise_rows, _raise_rows_serial)]


def _serial() -> bool:
    """Whether to run the serial kernels: inside a tile worker (numba's workqueue layer must not be
    entered by two threads at once) or on one thread; else set numba's threads to PyTorch's."""
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if tile_threads.in_worker() or threads <= 1:
        return True
    numba.set_num_threads(threads)
    return False


def bin_rows(sums: torch.Tensor, first_row: int, v: torch.Tensor, floor: torch.Tensor | None = None, *, base: int,
             low: int, mask: int, one: int, underflow: int, prefetch: bool = False) -> None:
    """Add the keys of ``v`` ``(q, k)`` (float32, C-contiguous) into rows ``first_row … first_row + q``
    of ``sums`` ``(Q, columns)`` (int64), as the module docstring says; keys below the window (column
    ``< underflow``: the underflow columns are never read) or below the cut (bits below ``floor``
    ``(q,)``, :meth:`~lemmse.estimators.mass.MassHistogram.update`; None: no cut) are skipped. With
    ``prefetch`` each row is first read once in order (one value per cache line): rows last touched a
    key block ago are out of cache, and an in-order read streams them in where the keys' scattered
    additions would each wait on memory (the caller decides, from how many keys a row takes)."""
    if v.dtype != torch.float32 or sums.dtype != torch.int64 or not sums.is_contiguous():
        raise ValueError(f"need float32 weights and contiguous int64 sums, got {v.dtype} and {sums.dtype}")
    if not 0 <= first_row <= sums.shape[0] - v.shape[0]:
        raise ValueError(f"rows {first_row}…{first_row + v.shape[0] - 1} outside the {sums.shape[0]} histogram rows")
    kernel = _bin_rows_serial if _serial() else _bin_rows
    if floor is None:
        floor = torch.zeros(v.shape[0], dtype=torch.int64)
    if floor.shape != (v.shape[0],):
        raise ValueError(f"need one floor per row ({v.shape[0]}), got shape {tuple(floor.shape)}")
    above, _ = kernel(sums.numpy(), first_row, v.contiguous().view(torch.int32).numpy(),
                      floor.to(torch.int64).contiguous().numpy(), base, low, mask, one, underflow, prefetch)
    if above:
        raise ValueError(f"{above} key(s) binned above their histogram row: weights above the anchor "
                         "(the rows' histograms are no longer valid)")


def raise_rows(sums: torch.Tensor, anchor: torch.Tensor, first_row: int, shift: torch.Tensor, *, hi_bits: int,
               n_bins: int, headroom: float) -> None:
    """Rows ``first_row … first_row + q`` of ``sums`` (int64) and ``anchor`` (float64, octaves) after their
    running maxima ``shift`` ``(q,)``: where ``shift > anchor·log 2`` the anchor becomes
    ``⌈(shift + headroom)/log 2⌉`` and the row moves ``(new - old)·2^hi_bits`` columns down, zero-filling
    its top, or is cleared if that reaches ``n_bins`` (a row's first keys: left as it is, still empty).
    The same as :meth:`lemmse.estimators.mass.MassHistogram._raise_anchor`'s PyTorch path, in one pass."""
    if sums.dtype != torch.int64 or not sums.is_contiguous() or anchor.dtype != torch.float64 or not anchor.is_contiguous():
        raise ValueError(f"need contiguous int64 sums and float64 anchors, got {sums.dtype} and {anchor.dtype}")
    if not 0 <= first_row <= min(sums.shape[0], anchor.shape[0]) - shift.shape[0]:
        raise ValueError(f"rows {first_row}…{first_row + shift.shape[0] - 1} outside the {sums.shape[0]} histogram rows")
    kernel = _raise_rows_serial if _serial() else _raise_rows
    kernel(sums.numpy(), anchor.numpy(), first_row, shift.to(torch.float64).contiguous().numpy(), hi_bits, n_bins,
           float(headroom))


def available(device: torch.device) -> bool:
    """Whether :func:`bin_rows` serves a histogram on ``device``."""
    return ENABLED and device.type == "cpu"
