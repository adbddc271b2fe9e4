r"""LE-MMSE case 3: any linear ``B``, with explicit ``Q_n = Π_n B`` matrices (paper Prop. B.5).

Slow (dense ``(C·H·W)²`` matrices) and meant for small images: it is the oracle the fast cases
are tested against, and the path for pre-inverses that are neither convolutions nor masks.

For a query pixel ``n'`` with ``z = Q_{n'} y``: positions are stratified by ``r_n = rank(Q_nQ_nᵀ)``;
``z`` belongs to the lowest-rank stratum whose union of supports ``∪ Im(Q_nQ_nᵀ)`` contains it;
within that stratum the weights are the degenerate Gaussians

.. math:: \mathcal N(z; μ, σ^2Σ_n) = \frac{\exp(-½ ‖Λ_n^{-1/2}U_nᵀ(z-μ)‖²/σ²)}{\sqrt{(2πσ^2)^{r_n}|Σ_n|_+}}
          \quad\text{if } z - μ ∈ \mathrm{Im}\,Σ_n, \text{ else } 0,

with ``μ = Q_n A x_d``; the residuals are whitened and squared directly (no expansion).
Support membership is a float64 projection test with a relative tolerance — acceptable for an
oracle; the fast case 2 decides it from the mask instead.
"""
from __future__ import annotations

import math

import torch

from lemmse.estimators.patches import patch_offsets
from lemmse.operators import InverseProblem
from lemmse.operators.linear_maps import RANK_RTOL, CircularLinearMap

SUPPORT_RTOL = 1e-9


def patch_indices(channels: int, h: int, w: int, patch: int) -> torch.Tensor:
    """``(H·W, C·P²)`` flat indices into a ``(C, H, W)`` image of the patch at each pixel."""
    off = patch_offsets(patch)
    i = torch.arange(h).repeat_interleave(w)
    j = torch.arange(w).repeat(h)
    rows = (i[:, None] + off[None, :, 0]) % h
    cols = (j[:, None] + off[None, :, 1]) % w
    pix = rows * w + cols  # (H·W, P²)
    return (torch.arange(channels)[None, :, None] * h * w + pix[:, None, :]).reshape(h * w, -1)


def lemmse_general(train: torch.Tensor, y: torch.Tensor, problem: InverseProblem, B: CircularLinearMap,
                   patch: int, sigma: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """LE-MMSE for any linear ``B`` (see module docstring); returns ``(n, C, H, W)`` in ``dtype``."""
    n, channels, h, w = y.shape
    B, problem = B.cpu(), problem.cpu()
    idx = patch_indices(channels, h, w, patch)
    b_mat = B.dense_matrix(channels)
    q_mats = b_mat[idx]  # (H·W, C·P², N)
    cov = q_mats @ q_mats.transpose(1, 2)
    evals, evecs = torch.linalg.eigh(cov)
    top = evals.amax(dim=1, keepdim=True)
    kept = (evals > RANK_RTOL * top) & (top > 0)
    ranks = kept.sum(dim=1)

    x = train.to(torch.float64)
    keys = problem.forward_map(x)
    keys = B(keys).reshape(x.shape[0], -1)[:, idx]  # (D, H·W, C·P²)
    centres = x.reshape(x.shape[0], channels, h * w).transpose(1, 2)  # (D, H·W, C)
    by = B(y.to(torch.float64)).reshape(n, -1)

    strata = {}
    for r in sorted(set(ranks.tolist())):
        members = (ranks == r).nonzero().flatten()
        u = torch.stack([evecs[m][:, kept[m]] for m in members.tolist()]) if r else None  # (S, F, r)
        lam = torch.stack([evals[m][kept[m]] for m in members.tolist()]) if r else None  # (S, r)
        white_keys = torch.einsum("sfr,dsf->dsr", u, keys[:, members]) if r else None
        strata[r] = (members, u, lam, white_keys)

    out = torch.empty(n, h * w, channels, dtype=torch.float64)
    for i in range(n):
        var = float(sigma[i]) ** 2
        for n_prime in range(h * w):
            z = by[i, idx[n_prime]]
            out[i, n_prime] = _pixel(z, strata, centres, var)
    return out.transpose(1, 2).reshape(n, channels, h, w).to(dtype)


def _pixel(z: torch.Tensor, strata: dict, centres: torch.Tensor, var: float) -> torch.Tensor:
    """Weighted centre pixels for one query ``z``, using the lowest stratum that supports it."""
    scale = SUPPORT_RTOL * max(1.0, float(z.norm()))
    for r, (members, u, lam, white_keys) in strata.items():
        if r == 0:
            if float(z.norm()) <= scale:
                return centres[:, members].reshape(-1, centres.shape[-1]).mean(dim=0)
            continue
        coef = torch.einsum("sfr,f->sr", u, z)
        residual = (z[None] - torch.einsum("sfr,sr->sf", u, coef)).norm(dim=1)
        inside = residual <= scale
        if not bool(inside.any()):
            continue
        diff = (coef[inside][None] - white_keys[:, inside]) / torch.sqrt(lam[inside])[None]  # (D, S', r)
        logw = (-0.5 * (diff**2).sum(dim=2) / var
                - 0.5 * r * math.log(2 * math.pi * var) - 0.5 * torch.log(lam[inside]).sum(dim=1)[None])
        weights = torch.softmax(logw.reshape(-1), dim=0)
        values = centres[:, members[inside]].reshape(-1, centres.shape[-1])
        return weights @ values
    raise AssertionError("the query's own position always supports it")
