r"""Preconditioning by the known noise level: the network sees ``B y`` at a bounded scale and
learns a correction of it.

The network input ``v = B y = B A x + σ B e`` carries noise of per-pixel variance ``κ σ²`` with

.. math:: κ = \frac{1}{H W} \lVert B \rVert_F^2

(:meth:`~lemmse.operators.linear_maps.CircularLinearMap.noise_gain`): ``κ = 1`` for ``B = I``,
``≈ 0.8`` for inpainting with ``A⁺``, but ``≈ 3·10⁵`` for deconvolution with ``A⁺`` on 16×16
images — there ``B y`` is noise ``~500 σ`` times the signal, and a network fed it raw has its
normalisation and σ-conditioning swamped (it outputs flat grey). :class:`Preconditioned` computes

.. math:: f(v, σ) = c_{\mathrm{skip}}(σ)\, v + g\bigl(c_{\mathrm{in}}(σ)\, v,\ σ\bigr), \qquad
          c_{\mathrm{in}} = (s^2 + κσ^2)^{-1/2}, \quad c_{\mathrm{skip}} = \frac{s^2}{s^2 + κσ^2},

with ``s = 0.5`` the scale of images in [0, 1] (the preconditioning of Karras et al. 2022, with
``c_out = 1`` so that ``g`` can still fill in what ``B y`` lacks at σ = 0, e.g. an inpainting
hole): ``g`` starts from the skip ``v`` where the input is clean and from 0 where it is noise.
Both factors are functions of σ alone, so ``f`` is still a local, translation-equivariant
function of ``(B y, σ)`` with ``g``'s receptive field, and its MSE optimum is still the LE-MMSE:
only the optimisation changes.
"""
from __future__ import annotations

import torch

from lemmse.models.embedding import sigma_batch

#: Scale ``s`` of the images (values in [0, 1]).
SIGNAL_SCALE = 0.5


class Preconditioned(torch.nn.Module):
    """``Preconditioned(net, κ)(v, σ) = c_skip(σ) v + net(c_in(σ) v, σ)``; ``patch`` is ``net``'s."""

    def __init__(self, net: torch.nn.Module, noise_gain: float, signal_scale: float = SIGNAL_SCALE):
        super().__init__()
        if not noise_gain > 0:
            raise ValueError(f"noise_gain must be > 0, got {noise_gain}")
        self.net = net
        self.patch = net.patch
        self.signal_scale = float(signal_scale)
        self.register_buffer("noise_gain", torch.tensor(float(noise_gain)))

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c_in, c_skip)`` per sample, shaped ``(batch, 1, 1, 1)``."""
        s2 = self.signal_scale**2
        total = s2 + self.noise_gain.to(sigma.dtype) * sigma**2
        return torch.rsqrt(total)[:, None, None, None], (s2 / total)[:, None, None, None]

    def forward(self, v: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        s = sigma_batch(sigma, v.shape[0], v)
        c_in, c_skip = self.coefficients(s)
        return c_skip * v + self.net(c_in * v, s)
