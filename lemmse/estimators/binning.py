r"""The 99 %-mass histogram's binning on CPU, fused into one pass per key (a numba kernel).

:class:`lemmse.estimators.mass.MassHistogram` bins every key of a tile by the bits of its scaled
weight ``v`` (float32): column ``c = max((bits(v) - base) >> low, j mod U)`` (``j`` the key's
position in the tile, ``U`` the underflow columns) and adds ``2^S + (bits(v) & (2^23 - 1))`` to
the row's int64 sum in that column. In PyTorch that is six passes over the tile (subtract,
shift, maximum, mask, add, scatter), each writing a tile-sized temporary; here it is one loop that
reads each key once and adds into its row, which stays in cache. The integers are the same, so
the histogram is bit-identical to the PyTorch path (``tests/test_estimator_mass.py`` runs both).

Rows are split between threads (``prange``): a tile's rows are distinct queries, so no two
threads add into the same row. The thread count follows PyTorch's (the job's ``threads``).
"""
from __future__ import annotations

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the PyTorch path stays correct without it
    numba = None

#: Use the fused kernel for packed float32 histograms on CPU (the PyTorch path otherwise).
ENABLED = numba is not None


if numba is not None:
    @numba.njit(parallel=True, cache=True, nogil=True)
    def _bin_rows(sums, first_row, bits, base, low, mask, one, spread):  # pragma: no cover - compiled
        q, k = bits.shape
        for i in numba.prange(q):
            row = sums[first_row + i]
            for j in range(k):
                b = np.int64(bits[i, j])
                c = (b - base) >> low
                floor = j & spread  # j mod U, U a power of two (no division in the inner loop)
                if c < floor:
                    c = floor
                row[c] += (b & mask) + one


def bin_rows(sums: torch.Tensor, first_row: int, v: torch.Tensor, *, base: int, low: int, mask: int, one: int,
             underflow: int) -> None:
    """Add the keys of ``v`` ``(q, k)`` (float32, C-contiguous) into rows ``first_row … first_row + q``
    of ``sums`` ``(Q, columns)`` (int64), as the module docstring says."""
    if underflow & (underflow - 1):
        raise ValueError(f"underflow columns must be a power of two, got {underflow}")
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    _bin_rows(sums.numpy(), first_row, v.contiguous().view(torch.int32).numpy(), base, low, mask, one, underflow - 1)


def available(device: torch.device) -> bool:
    """Whether :func:`bin_rows` serves a histogram on ``device``."""
    return ENABLED and device.type == "cpu"
