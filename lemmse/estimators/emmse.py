r"""Translation-equivariant MMSE, E-MMSE (≈ a CNN with an unbounded receptive field).

.. math:: \hat x(y) = \sum_{d,g} w_{d,g}\, T_g x_d, \qquad
          w_{d,g} \propto \mathcal N(T_g^{-1} B y;\ B A x_d,\ σ^2 BBᵀ).

*Convolution* ``B`` commutes with shifts, so the exponent is ``-‖P(T_g^{-1}y - Ax_d)‖²/2σ²`` with
``P`` the projector onto ``Im Bᵀ``: for all ``H·W`` shifts at once it is
``‖Py‖² + ‖PAx_d‖² - 2 (Py ⋆ PAx_d)(g)``, one circular cross-correlation by FFT in float64.
*Mask* ``B = diag(m)``: ``T_g^{-1}(m⊙y) - m⊙x_d`` lies in ``Im diag(m)`` only for the shifts that
map the observed set into itself (decided from the mask), and for those the same formula holds
with ``P = diag(m)``; all other shifts get weight 0.
The weighted sum ``Σ_g w_{d,g} T_g x_d`` is a circular convolution of the weight map with ``x_d``.
"""
from __future__ import annotations

import torch

from lemmse.estimators.accumulator import StreamingSoftmax
from lemmse.estimators.api import StreamOptions
from lemmse.estimators.features import projector
from lemmse.estimators.stream import images_per_block, training_blocks
from lemmse.operators import InverseProblem
from lemmse.operators.linear_maps import CircularLinearMap, PixelWeights


def allowed_shifts(B: CircularLinearMap) -> torch.Tensor | None:
    """Boolean ``(H, W)`` of shifts ``g`` with ``supp(T_g^{-1} m) ⊆ supp(m)``; ``None`` = all shifts."""
    if not isinstance(B, PixelWeights):
        return None
    support = B.support()
    h, w = support.shape
    ok = torch.zeros(h, w, dtype=torch.bool, device=support.device)
    for gi in range(h):
        for gj in range(w):
            shifted = torch.roll(support, shifts=(-gi, -gj), dims=(0, 1))  # m(n + g)
            ok[gi, gj] = bool((~shifted | support).all())
    return ok


def emmse(train: torch.Tensor, y: torch.Tensor, problem: InverseProblem, B: CircularLinearMap,
          sigma: torch.Tensor, opts: StreamOptions) -> torch.Tensor:
    n, channels, h, w = y.shape
    project = projector(B)
    shifts = allowed_shifts(B)
    z_hat = torch.fft.fft2(project(y.to(device=opts.device, dtype=torch.float64)))  # (n, C, H, W)
    inv_var = 1.0 / sigma.to(opts.device) ** 2
    acc = StreamingSoftmax(n, channels * h * w, device=opts.device, dtype=opts.dtype)
    per_block = images_per_block(h * w, opts.key_block)
    for start, x in training_blocks(train, per_block, opts.device, opts.progress, "E-MMSE"):
        b = x.shape[0]
        a = project(problem.A(x))
        a_hat = torch.fft.fft2(a)
        x_hat = torch.fft.fft2(x)
        norms = (a * a).sum(dim=(1, 2, 3))  # (b,)
        corr = torch.fft.ifft2(torch.einsum("nchw,bchw->nbhw", z_hat, a_hat.conj())).real
        logits = (corr - 0.5 * norms[None, :, None, None]) * inv_var[:, None, None, None]
        if shifts is not None:
            logits = logits.masked_fill(~shifts, -torch.inf)
        logits = logits.reshape(n, b * h * w)

        def weighted_images(weights: torch.Tensor, x_hat=x_hat, b=b) -> torch.Tensor:
            w_hat = torch.fft.fft2(weights.to(torch.float64).reshape(-1, b, h, w))
            out = torch.fft.ifft2(torch.einsum("qbhw,bchw->qchw", w_hat, x_hat)).real
            return out.reshape(weights.shape[0], -1).to(opts.dtype)

        for q0 in range(0, n, opts.query_block):
            rows = slice(q0, min(q0 + opts.query_block, n))
            acc.update(rows, logits[rows].contiguous(), weighted_images, first_owner=start, group=h * w)
    return acc.mean().reshape(n, channels, h, w).cpu()
