r"""The one streaming log-sum-exp accumulator every estimator uses.

For each query ``q`` it accumulates, over blocks of keys ``k`` arriving one after another,

.. math::  m_q = \max_k l_{qk}, \quad S_q = \sum_k e^{l_{qk} - m_q}\,[v_k, 1]

rescaling what it holds by ``e^{m_{old} - m_{new}}`` whenever the running maximum grows (the
online softmax of flash-attention). At the end, ``mean = S[:, :V] / S[:, V]`` is the
softmax-weighted average of the values and ``log Σ_k e^{l_{qk}} = m_q + log S_{q,V}``.

Logits always arrive in float64 (they are computed exactly there); the exponentials and value
sums use ``dtype`` (float32 by default, where ``e^{l-m}`` with ``l - m ∈ [-30, 0]`` has relative
error ~1e-7). A block may hold only some of its keys (``columns``: the keys the streaming
scorer of :mod:`lemmse.estimators.stream` kept; the others weigh less than ``e^{-87}`` of the
largest weight of their query) and only some queries, in any order (``rows``: a slice or an
index tensor). It also tracks, on request, which *owner* (training image) holds the largest share
of each query's weight: keys come in whole images, ``group`` consecutive keys per image, so the
share of every image is final once its block has been seen and only the best one is kept.

Shifted logits are clamped from below at ``log(tiny)`` of ``dtype`` (about -87 in float32)
before the exponential: a weight below the smallest normal number changes no sum (it is at
least ``e^{87}`` times smaller than the largest weight, which is 1), while the exponential of
an input that underflows takes a slow path on CPUs, 5-10× slower than a normal one.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

ValueFn = Callable[[torch.Tensor], torch.Tensor]


def exp_floor(dtype: torch.dtype) -> float:
    """Smallest exponent whose exponential is a normal number of ``dtype`` (rounded up)."""
    return float(math.ceil(math.log(torch.finfo(dtype).tiny)))


class StreamingSoftmax:
    """Online softmax-weighted averages for ``n_queries`` queries and ``value_dim`` values each."""

    def __init__(self, n_queries: int, value_dim: int, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, track_owner: bool = False):
        self.value_dim = value_dim
        self.dtype = dtype
        self.max = torch.full((n_queries,), -torch.inf, dtype=torch.float64, device=device)
        self.sums = torch.zeros(n_queries, value_dim + 1, dtype=dtype, device=device)
        self.track_owner = track_owner
        self._workspace = torch.empty(0, dtype=dtype, device=device)
        self._floor = exp_floor(dtype)
        if track_owner:
            self.owner_weight = torch.zeros(n_queries, dtype=dtype, device=device)
            self.owner_index = torch.full((n_queries,), -1, dtype=torch.long, device=device)

    def update(self, rows: slice | torch.Tensor, logits: torch.Tensor, values: torch.Tensor | ValueFn,
               *, first_owner: int = 0, group: int = 1, columns: torch.Tensor | None = None) -> None:
        """Fold one block in (``logits``: (q, k) float64, left unchanged).

        ``values`` is either a ``(k, V + 1)`` matrix whose last column is ones (so the
        normaliser comes out of the same product), or a function mapping the ``(q, k)``
        weights to their ``(q, V)`` weighted value sums. ``rows`` picks the queries (a slice or
        indices); ``columns``, when given, names the block's keys that ``logits`` holds (ascending).
        """
        old = self.max[rows]
        new = torch.maximum(old, logits.amax(dim=1))
        # rows where every logit is -inf so far keep a zero state: shift by 0 instead of -inf
        shift = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
        weights = self._weights_buffer(logits.shape)
        torch.sub(logits, shift[:, None], out=weights)  # exact in float64, then one rounding
        weights.clamp_(min=self._floor).exp_()
        rescale = torch.exp(old - shift).to(self.dtype)
        sums = self.sums[rows]  # a view for a slice, a copy for indices (written back below)
        sums.mul_(rescale[:, None])
        if callable(values):
            sums[:, : self.value_dim] += values(weights)
            sums[:, self.value_dim] += weights.sum(dim=1)
        else:
            # (V+1, k) @ (k, q), the long key axis inner: BLAS runs this 3-4x faster than the
            # skinny (q, k) @ (k, V+1) it would otherwise get.
            sums.add_(torch.mm(values.T.contiguous(), weights.T).T)
        if not isinstance(rows, slice):
            self.sums[rows] = sums
        if self.track_owner and columns is not None:
            weights = _all_keys(weights, columns, group)
        if self.track_owner:
            per_owner = weights.view(weights.shape[0], -1, group).sum(dim=2)
            best, arg = per_owner.max(dim=1)
            held = self.owner_weight[rows].mul_(rescale)
            better = best > held
            self.owner_weight[rows] = torch.where(better, best, held)
            self.owner_index[rows] = torch.where(better, arg + first_owner, self.owner_index[rows])
        self.max[rows] = new

    def _weights_buffer(self, shape: torch.Size) -> torch.Tensor:
        """A reusable ``shape`` tensor in ``dtype`` (no allocation or page faults per tile)."""
        size = shape[0] * shape[1]
        if self._workspace.numel() < size:
            self._workspace = torch.empty(size, dtype=self.dtype, device=self._workspace.device)
        return self._workspace[:size].view(shape)

    def mean(self) -> torch.Tensor:
        """Softmax-weighted average of the values, ``(n_queries, V)``."""
        return self.sums[:, : self.value_dim] / self.sums[:, self.value_dim : self.value_dim + 1]

    def log_normaliser(self) -> torch.Tensor:
        """``log Σ_k e^{l_k}`` per query, float64."""
        return self.max + torch.log(self.sums[:, self.value_dim].to(torch.float64))

    def owner(self, threshold: float = 0.5) -> torch.Tensor:
        """Index of the owner holding at least ``threshold`` of the weight, else -1."""
        share = self.owner_weight / self.sums[:, self.value_dim]
        return torch.where(share >= threshold, self.owner_index, torch.full_like(self.owner_index, -1))


def _all_keys(weights: torch.Tensor, columns: torch.Tensor, group: int) -> torch.Tensor:
    """Weights of a key subset spread over the block's whole images (zeros elsewhere)."""
    width = (int(columns[-1]) // group + 1) * group
    dense = torch.zeros(weights.shape[0], width, dtype=weights.dtype, device=weights.device)
    return dense.index_copy_(1, columns, weights)
