r"""The one streaming log-sum-exp accumulator every estimator uses.

For each query ``q`` it accumulates, over blocks of keys ``k`` arriving one after another,

.. math::  m_q = \max_k l_{qk}, \quad S_q = \sum_k e^{l_{qk} - m_q}\,[v_k, 1]

rescaling what it holds by ``e^{m_{old} - m_{new}}`` whenever the running maximum grows (the
online softmax of flash-attention). At the end, ``mean = S[:, :V] / S[:, V]`` is the
softmax-weighted average of the values and ``log Σ_k e^{l_{qk}} = m_q + log S_{q,V}``.

Logits always arrive in float64 (they are computed exactly there); the exponentials and each
tile's value sums use ``dtype`` (float32 by default, where ``e^{l-m}`` with ``l - m ∈ [-30, 0]``
has relative error ~1e-7). The running sums ``S`` are carried from tile to tile in float64 whatever
``dtype`` is: a float32 running sum over ``B`` blocks errs by up to ``B·2^-24`` relative (one
rounding per block, all alike when the blocks weigh alike: 2e-4 over 20 000 one-key blocks), which
would move the 99 %-mass counts, measured against ``log Z``, by whole keys; in float64 only each
tile's own sums are rounded in ``dtype``, and the mean is returned in ``dtype``.

A block may hold only some of its keys (``columns``: the keys the fp32 screen of
:mod:`lemmse.estimators.stream` kept; the others weigh less than ``e^{-W}`` of the largest
weight of their query, :func:`lemmse.estimators.stream.window`) and only some queries, in any
order (``rows``: a slice or an index tensor; the streaming scorer hands slices of its queries'
tile order, and ``order`` maps that back: every reader returns the queries in their original
order). On request (``track_owner``) it also tracks, per query, the owners (training
images) behind the paper's patchwork map (§D.5): keys come in whole images, ``group``
consecutive keys per image (key ``j`` of a block belongs to image ``first_owner + j // group``).

* the **key owner**: the image of the single key with the largest logit; its share of the
  weight is ``e^{max - log Z}`` (:meth:`key_owner`);
* the **image owner**: the image whose keys *together* hold the largest share (the share of
  every image is final once its block has been seen, so only the best one is kept;
  :meth:`image_owner`).

On request (``mass``, a :class:`~lemmse.estimators.mass.MassHistogram` of as many queries) it
also feeds every tile's logits and weights to that histogram, from which the 99 %-mass counts are
read after the pass (:meth:`mass_bounds`): no second pass over the keys. Keys the screen dropped
can own nothing (their weight is below ``e^{-W}`` of the largest) and fall below the histogram's
window (``log K + 4.6`` below the maximum, narrower than ``W``), so both diagnostics read the
screened tiles as they are.

Updates of distinct rows may run concurrently (:mod:`lemmse.estimators.tile_threads`): each
touches only its rows, and the weights' workspace is per thread.

Shifted logits are clamped from below at ``log(tiny)`` of ``dtype`` (about -87 in float32)
before the exponential: a weight below the smallest normal number changes no sum (it is at
least ``e^{87}`` times smaller than the largest weight, which is 1), while the exponential of
an input that underflows takes a slow path on CPUs, 5-10× slower than a normal one.
"""
from __future__ import annotations

import math
import threading
from typing import Callable

import torch

from lemmse.estimators import tile_threads
from lemmse.estimators.mass import MassHistogram

ValueFn = Callable[[torch.Tensor], torch.Tensor]

#: Keys per image from which per-image maxima are taken (smaller groups: the plain maximum).
MIN_GROUP = 8


def exp_floor(dtype: torch.dtype) -> float:
    """Smallest exponent whose exponential is a normal number of ``dtype`` (rounded up)."""
    return float(math.ceil(math.log(torch.finfo(dtype).tiny)))


class StreamingSoftmax:
    """Online softmax-weighted averages for ``n_queries`` queries and ``value_dim`` values each."""

    def __init__(self, n_queries: int, value_dim: int, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, track_owner: bool = False, mass: MassHistogram | None = None,
                 order: torch.Tensor | None = None):
        self.value_dim = value_dim
        #: row ``i`` of the state is query ``order[i]`` (None: the identity)
        self.order = order
        self.dtype = dtype
        self.max = torch.full((n_queries,), -torch.inf, dtype=torch.float64, device=device)
        #: the running ``S`` (float64: module docstring); ``S[:, V]`` is the normaliser
        self.sums = torch.zeros(n_queries, value_dim + 1, dtype=torch.float64, device=device)
        self.track_owner = track_owner
        self._device = torch.device(device)
        self._scratch = threading.local()  # per thread: tiles may run concurrently (tile_threads)
        self._floor = exp_floor(dtype)
        if track_owner:
            self.owner_weight = torch.zeros(n_queries, dtype=dtype, device=device)
            self.owner_index = torch.full((n_queries,), -1, dtype=torch.long, device=device)
            self.key_owner_index = torch.full((n_queries,), -1, dtype=torch.long, device=device)
        self.mass = mass

    def update(self, rows: slice, logits: torch.Tensor, values: torch.Tensor | ValueFn,
               *, first_owner: int = 0, group: int = 1, columns: torch.Tensor | None = None) -> None:
        """Fold one block in (``logits``: (q, k) float64, left unchanged).

        ``values`` is either a ``(k, V + 1)`` matrix whose last column is ones (so the
        normaliser comes out of the same product), or a function mapping the ``(q, k)``
        weights to their ``(q, V)`` weighted value sums. ``rows`` is the run of state rows the
        block's queries occupy; ``columns``, when given, names the block's keys that ``logits`` holds.
        """
        old = self.max[rows]
        q, k = logits.shape
        # per-image maxima (one pass, like the plain maximum): owners and mass histogram read them
        per_image = ((self.track_owner or self.mass is not None) and columns is None and group >= MIN_GROUP
                     and k % group == 0 and logits.is_contiguous())
        image_max = logits.view(q, k // group, group).amax(dim=2) if per_image else None
        block_max = image_max.amax(dim=1) if per_image else logits.amax(dim=1)
        if self.track_owner:
            self._track_key_owner(rows, logits, image_max, block_max, old, first_owner, group, columns)
        new = torch.maximum(old, block_max)
        # rows where every logit is -inf so far keep a zero state: shift by 0 instead of -inf
        shift = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
        weights = self._weights_buffer(logits.shape)
        torch.sub(logits, shift[:, None], out=weights)  # exact in float64, then one rounding
        weights.clamp_(min=self._floor).exp_()
        rescale64 = torch.exp(old - shift)
        sums = self.sums[rows]  # a view: updated in place (float64; this tile's sums in dtype)
        sums.mul_(rescale64[:, None])
        if callable(values):
            sums[:, : self.value_dim] += values(weights)
            sums[:, self.value_dim] += weights.sum(dim=1)
        else:
            # (V+1, k) @ (k, q), the long key axis inner: BLAS runs this 3-4x faster than the
            # skinny (q, k) @ (k, V+1) it would otherwise get.
            sums.add_(torch.mm(values.T.contiguous(), weights.T).T)
        if self.track_owner:
            if columns is None:
                per_owner = weights.view(weights.shape[0], -1, group).sum(dim=2)
            else:  # the kept keys' weights summed per image: a product with their (k, images) one-hot
                # matrix (a few images per block), 3× faster than an index_add_ along the rows
                images = torch.div(columns, group, rounding_mode="floor")
                one_hot = images[:, None] == torch.arange(int(images[-1]) + 1, device=images.device)
                per_owner = torch.mm(weights, one_hot.to(weights.dtype))
            best, arg = per_owner.max(dim=1)
            held = self.owner_weight[rows].mul_(rescale64.to(self.dtype))
            better = best > held
            self.owner_weight[rows] = torch.where(better, best, held)
            self.owner_index[rows] = torch.where(better, arg + first_owner, self.owner_index[rows])
        if self.mass is not None:
            # the running log Z (this tile included) cuts the histogram's keys: it only grows
            log_z = shift + torch.log(sums[:, self.value_dim])
            self.mass.update(rows, weights, shift, image_max, group, log_z)  # last: it overwrites the weights
        self.max[rows] = new

    def _track_key_owner(self, rows: slice, logits: torch.Tensor, image_max: torch.Tensor | None,
                         block_max: torch.Tensor, old: torch.Tensor, first_owner: int, group: int,
                         columns: torch.Tensor | None) -> None:
        """Keep the image of the largest logit seen so far (first one on exact ties).

        Only the rows whose maximum this block raises look for its owner: the first image whose
        maximum is the block's (``image_max``), else the image of the first largest logit."""
        better = (block_max > old).nonzero().squeeze(1)
        if better.numel() == 0:
            return
        if image_max is not None:
            image = image_max.index_select(0, better).argmax(dim=1)
        else:
            key = logits.index_select(0, better).argmax(dim=1)
            if columns is not None:
                key = columns[key]
            image = torch.div(key, group, rounding_mode="floor")
        self.key_owner_index[better + rows.start] = image + first_owner

    def _weights_buffer(self, shape: torch.Size) -> torch.Tensor:
        """A reusable ``shape`` tensor in ``dtype`` (no allocation or page faults per tile)."""
        size = shape[0] * shape[1]
        held = tile_threads.scratch(self._scratch)
        workspace = held.get("weights")
        if workspace is None or workspace.numel() < size:
            workspace = held["weights"] = torch.empty(size, dtype=self.dtype, device=self._device)
        return workspace[:size].view(shape)

    def _original(self, state: torch.Tensor) -> torch.Tensor:
        """``state`` (one row per query, in the state's order) in the queries' original order."""
        if self.order is None:
            return state
        out = torch.empty_like(state)
        out[self.order] = state
        return out

    def mean(self) -> torch.Tensor:
        """Softmax-weighted average of the values, ``(n_queries, V)``."""
        mean = self.sums[:, : self.value_dim] / self.sums[:, self.value_dim : self.value_dim + 1]
        return self._original(mean.to(self.dtype))

    def log_normaliser(self) -> torch.Tensor:
        """``log Σ_k e^{l_k}`` per query, float64."""
        return self._original(self._log_normaliser())

    def _log_normaliser(self) -> torch.Tensor:
        return self.max + torch.log(self.sums[:, self.value_dim])

    def key_owner(self, threshold: float = 0.5) -> torch.Tensor:
        """Image of the single key holding at least ``threshold`` of the weight, else -1.

        The share of the top key is ``e^{max - log Z} = 1 / S`` with ``S`` the normaliser sum
        (the top key's shifted weight is ``e^0 = 1``)."""
        share = 1.0 / self.sums[:, self.value_dim]
        return self._original(torch.where(share >= threshold, self.key_owner_index,
                                          torch.full_like(self.key_owner_index, -1)))

    def mass_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k_lo, k_hi)`` of the top-mass count per query (needs ``mass``; see :mod:`~lemmse.estimators.mass`)."""
        if self.mass is None:
            raise RuntimeError("built without a MassHistogram: no top-mass counts")
        k_lo, k_hi = self.mass.bounds(self._log_normaliser())
        return self._original(k_lo), self._original(k_hi)

    def image_owner(self, threshold: float = 0.5) -> torch.Tensor:
        """Image whose keys together hold at least ``threshold`` of the weight, else -1."""
        share = self.owner_weight / self.sums[:, self.value_dim]
        return self._original(torch.where(share >= threshold, self.owner_index, torch.full_like(self.owner_index, -1)))

