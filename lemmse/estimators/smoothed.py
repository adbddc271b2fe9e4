r"""Smoothed LE-MMSE (spectral bias, paper §4.4): ``x̂_s(y) = E_z[x̂(y + s z)]``, ``z ~ N(0, I)``.

Estimated with ``K`` Monte-Carlo draws ``z_1 … z_K`` from a generator seeded with ``seed``; the
same draws serve every measurement, so results do not depend on batching. All ``n·K`` perturbed
measurements go through one LE-MMSE call. ``s = 0`` is exactly the LE-MMSE.
"""
from __future__ import annotations

import torch

from lemmse.estimators.api import EstimateResult, StreamOptions
from lemmse.estimators.lemmse import lemmse
from lemmse.operators import InverseProblem
from lemmse.operators.linear_maps import CircularLinearMap


def smoothing_draws(shape: tuple[int, ...], samples: int, seed: int) -> torch.Tensor:
    """``(samples, C, H, W)`` standard normal draws, float64, from ``torch.Generator().manual_seed(seed)``."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn((samples, *shape), generator=gen, dtype=torch.float64)


def smoothed_lemmse(train: torch.Tensor, y: torch.Tensor, problem: InverseProblem, B: CircularLinearMap,
                    patch: int, sigma: torch.Tensor, opts: StreamOptions, *, smoothing: float,
                    samples: int, seed: int) -> EstimateResult:
    n = y.shape[0]
    z = smoothing_draws(tuple(y.shape[1:]), samples, seed)
    perturbed = (y.to(torch.float64)[:, None] + smoothing * z[None]).reshape(n * samples, *y.shape[1:])
    res = lemmse(train, perturbed, problem, B, patch, sigma.repeat_interleave(samples), opts)
    xhat = res.xhat.reshape(n, samples, *y.shape[1:]).to(torch.float64).mean(dim=1).to(opts.dtype)
    return EstimateResult(xhat.cpu())
