r"""Noise-level conditioning: a sinusoidal embedding of σ.

For a batch of noise levels ``σ_b`` and an even ``dim = 2K`` the embedding is

.. math::

    e(σ)_k = \sin(s σ ω_k), \qquad e(σ)_{K+k} = \cos(s σ ω_k), \qquad
    ω_k = 10000^{-k/K}, \quad k = 0, …, K-1,

with ``s = 1000`` so that σ ∈ [0, 1] sweeps the same phase range as the integer time steps of
diffusion models (with ``s = 1`` every frequency but the first would barely move over [0, 1]).
The embedding is a function of σ only — a per-image constant — so adding a projection of it
to every pixel of a feature map keeps the network translation equivariant and local.
"""
from __future__ import annotations

import math

import torch

#: Multiplier applied to σ before the sinusoids (see the module docstring).
SIGMA_SCALE = 1000.0


def sigma_batch(sigma: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
    """``sigma`` (a number, a 0-d or a ``(batch,)`` tensor) as a ``(batch,)`` tensor like ``like``."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device).reshape(-1)
    if sigma.numel() == 1:
        return sigma.expand(batch)
    if sigma.numel() != batch:
        raise ValueError(f"sigma has {sigma.numel()} values for a batch of {batch}")
    return sigma


class SigmaEmbedding(torch.nn.Module):
    """Fixed (parameter-free) sinusoidal embedding ``(batch,) -> (batch, dim)``."""

    def __init__(self, dim: int, scale: float = SIGMA_SCALE, max_period: float = 10000.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"embedding dim must be even and >= 2, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", (scale * freqs).to(torch.float32), persistent=False)
        self.dim = dim

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        phase = sigma.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return torch.cat([phase.sin(), phase.cos()], dim=1).to(sigma.dtype)
