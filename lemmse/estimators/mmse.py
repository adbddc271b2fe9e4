r"""Unconstrained MMSE (≈ an MLP): the posterior mean under the empirical prior. It memorises.

.. math:: \hat x(y) = \sum_d w_d x_d, \qquad
          w_d \propto \exp\big(-‖Π_{\mathrm{Im}\,Bᵀ}(y - A x_d)‖^2 / 2σ^2\big).

``By - BAx_d = B(y - Ax_d)`` always lies in ``Im B``, so the degenerate Gaussian reduces to the
projected distance. Computed with the same streamed float64 kernel regression as the LE-MMSE,
queries being whole projected measurements and values whole training images.
"""
from __future__ import annotations

import torch

from lemmse.estimators.accumulator import StreamingSoftmax
from lemmse.estimators.api import StreamOptions
from lemmse.estimators.features import projector
from lemmse.estimators.stream import KeyBlock, attend, augmented_queries, images_per_block, training_blocks, with_ones
from lemmse.operators import InverseProblem
from lemmse.operators.linear_maps import CircularLinearMap


def mmse(train: torch.Tensor, y: torch.Tensor, problem: InverseProblem, B: CircularLinearMap,
         sigma: torch.Tensor, opts: StreamOptions) -> torch.Tensor:
    project = projector(B)
    n = y.shape[0]
    queries = project(y.to(device=opts.device, dtype=torch.float64)).reshape(n, -1)
    q_aug = augmented_queries(queries, 1.0 / sigma.to(opts.device) ** 2, n_keys=train.shape[0])
    acc = StreamingSoftmax(n, queries.shape[1], device=opts.device, dtype=opts.dtype, order=q_aug.order)
    per_block = images_per_block(1, opts.key_block)
    for start, x in training_blocks(train, per_block, opts.device, opts.progress, "MMSE"):
        keys = project(problem.A(x)).reshape(x.shape[0], -1)
        attend(q_aug, KeyBlock(keys, with_ones(x.reshape(x.shape[0], -1), opts.dtype), start, 1),
               acc, opts.query_block)
    return acc.mean().reshape(y.shape).cpu()
