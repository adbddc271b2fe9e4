r"""A minimal ResNet (as in Kamb & Ganguli, used by the paper): 3×3 blocks, BatchNorm, ReLU.

.. math::

    h_0 = W_{\mathrm{in}} * v, \qquad
    h_{i+1} = h_i + \mathrm{ReLU}(\mathrm{BN}_i(W_i * (h_i + E_i e(σ)))), \quad i < n,
    \qquad \hat x = W_{1×1} * \mathrm{BN}(h_n + E_n e(σ)),

with ``W_in`` and every ``W_i`` 3×3 circular convolutions of width ``width``,
``E_i = SiLU ∘ Linear`` projections of the sinusoidal σ embedding ``e(σ)`` and a 1×1 head.
The receptive field is ``3 + 2n``: ``n = (P - 3) / 2`` blocks give exactly ``P×P``.
BatchNorm is evaluated with running statistics in ``eval()`` mode (see
:mod:`lemmse.models.layers` for why that keeps the network local).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lemmse.models.embedding import SigmaEmbedding, sigma_batch
from lemmse.models.layers import circular_conv

#: The paper's width for each P (its Table 3: 4.2–4.5 M parameters for P = 5…11 on RGB).
_PAPER_WIDTH = {3: 640, 5: 640, 7: 448, 9: 384, 11: 328, 13: 296, 15: 272, 17: 256}


@dataclass(frozen=True)
class ResNetOptions:
    """Width of every 3×3 convolution; the depth follows from P."""

    width: int = 32

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")

    @classmethod
    def paper(cls, patch: int) -> "ResNetOptions":
        return cls(width=_PAPER_WIDTH.get(patch, 256))


class ResNet(torch.nn.Module):
    """``ResNet(in_channels, patch, options)(v, σ)``: ``(B, C, H, W)`` → ``(B, C, H, W)``."""

    def __init__(self, in_channels: int, patch: int, options: ResNetOptions | None = None):
        super().__init__()
        if patch < 3 or patch % 2 == 0:
            raise ValueError(f"the ResNet needs an odd patch >= 3, got {patch}")
        width = (options or ResNetOptions()).width
        self.patch = patch
        blocks = (patch - 3) // 2
        self.sigma_embedding = SigmaEmbedding(width + width % 2)
        self.conv_in = circular_conv(in_channels, width, 3)
        self.embs = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(width + width % 2, width), torch.nn.SiLU())
            for _ in range(blocks + 1))
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(circular_conv(width, width, 3), torch.nn.BatchNorm2d(width), torch.nn.ReLU())
            for _ in range(blocks))
        self.norm_out = torch.nn.BatchNorm2d(width)
        self.head = circular_conv(width, in_channels, 1)

    def forward(self, v: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        e = self.sigma_embedding(sigma_batch(sigma, v.shape[0], v))
        h = self.conv_in(v)
        for block, emb in zip(self.blocks, self.embs):
            h = h + block(h + emb(e)[:, :, None, None])
        return self.head(self.norm_out(h + self.embs[-1](e)[:, :, None, None]))
