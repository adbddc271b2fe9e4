r"""Gaussian kernel regression streamed over blocks of training images.

Every fast path reduces to softmax attention with logits ``-‖q - k‖² / 2σ_q²``. They are
computed as one float64 matrix product of augmented vectors,

.. math::  [q/σ_q², -1/(2σ_q²)] \cdot [k, ‖k‖²] = -‖q - k‖²/(2σ_q²) + ‖q‖²/(2σ_q²),

the last term being constant per query (it cancels in the softmax and is added back for the
densities). In float64 the expansion's cancellation costs ~1e-16·‖q‖‖k‖/σ², i.e. below 1e-7 in
the logit even at σ = 1e-3, while the product still runs at matrix-multiply speed; float32
would be off by O(1) there. Queries are grouped (one group per LE-MMSE stratum); each group
owns one :class:`~lemmse.estimators.accumulator.StreamingSoftmax`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch

from lemmse.progress import progress_bar


class Consumer(Protocol):
    def update(self, rows: slice, logits: torch.Tensor, values, *, first_owner: int = 0,
               group: int = 1) -> None: ...


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


def augmented_queries(features: torch.Tensor, inv_var: torch.Tensor) -> torch.Tensor:
    """``[q/σ², -1/(2σ²)]`` float64, ``(Q, F + 1)``; ``inv_var`` is ``1/σ²`` per query."""
    return torch.cat([features * inv_var[:, None], -0.5 * inv_var[:, None]], dim=1)


def with_ones(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[values, 1]`` in ``dtype``: the ones column yields the normaliser in the same product."""
    ones = torch.ones(values.shape[0], 1, dtype=dtype, device=values.device)
    return torch.cat([values.to(dtype), ones], dim=1)


def attend(queries_aug: torch.Tensor, keys: KeyBlock, consumer: Consumer, query_block: int) -> None:
    """Feed ``consumer`` the logits of every query against one key block, a query tile at a time."""
    k_aug_t = keys.augmented().T
    n_q, n_k = queries_aug.shape[0], k_aug_t.shape[1]
    buffer = torch.empty(min(query_block, n_q) * n_k, dtype=torch.float64, device=queries_aug.device)
    for start in range(0, n_q, query_block):
        stop = min(start + query_block, n_q)
        logits = buffer[: (stop - start) * n_k].view(stop - start, n_k)
        torch.mm(queries_aug[start:stop], k_aug_t, out=logits)
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
