r"""A full-resolution UNet whose receptive field is exactly ``P×P``.

Shape (encoder / decoder with skips, as diffusers' ``UNet2DModel`` that the paper modified):

.. code-block:: text

    conv_in ─ down[0] ─ … ─ down[L-1] ─ mid ─ up[L-1] ─ … ─ up[0] ─ norm, SiLU, conv_out
       └──────── skips: every conv_in / down output is concatenated into one up layer ─┘

Every block keeps the full ``H×W`` resolution: a stride-2 down-sampling is only equivariant to
even shifts, so the "levels" differ by channel width (``channels[l]``), not by resolution.

A residual block (pre-norm, σ added after its spatial conv) is

.. math::

    h' = W_{1×1} * \mathrm{SiLU}(\mathrm{N}_2(W_{k×k} * \mathrm{SiLU}(\mathrm{N}_1 h) + E\,e(σ))) + S h,

with ``N`` a :class:`~lemmse.models.layers.PixelGroupNorm`, ``S`` a 1×1 conv (or the identity)
and ``e(σ)`` the σ embedding. Its receptive field grows by ``k - 1``.

Receptive field
---------------
All paths from input to output are centred, so the receptive field is that of the longest one
(conv_in, every down layer, mid, every up layer, conv_out): ``1 + Σ (k_i - 1)`` over those
convolutions. :func:`kernel_plan` hands out the radius ``R = (P-1)/2`` one unit (a 3×3 kernel)
at a time, cheapest convolution first — conv_in, conv_out, then the layers of level 0, 1, …, and
the mid block last — cycling again (5×5, …) when ``R`` exceeds the number of convolutions. So the
receptive field is exactly ``P`` and the parameter count depends on ``P`` only mildly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lemmse.models.embedding import SigmaEmbedding, sigma_batch
from lemmse.models.layers import PixelGroupNorm, circular_conv


#: Level widths of the paper-scale setting for each P (3 levels, one block each).
_PAPER_CHANNELS = {3: (96, 224, 480), 5: (96, 224, 480), 7: (96, 224, 480), 9: (96, 224, 448),
                   11: (96, 192, 448), 13: (64, 192, 416), 15: (64, 160, 352), 17: (64, 128, 320)}


@dataclass(frozen=True)
class UNetOptions:
    """Width/depth of the UNet. ``channels[l]`` is the width of level ``l`` (0 = outermost).

    The small default is one level of 16 channels (conv_in, one down block, the mid block, two up
    blocks with their skips): at these widths a step's cost is the number of blocks (norms,
    activations, 1×1 convolutions), not their FLOPs, so a second level, even as narrow as (8, 16),
    costs more than widening one level and converges worse (see config/config.yaml's ``training``).
    """

    channels: tuple[int, ...] = (16,)
    layers_per_block: int = 1
    norm_groups: int = 1

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {self.channels}")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block must be >= 1, got {self.layers_per_block}")
        for c in self.channels:
            if c % self.norm_groups or c // self.norm_groups < 2:
                raise ValueError(f"every width in channels={self.channels} must be a multiple of "
                                 f"norm_groups={self.norm_groups} with >= 2 channels per group")

    @classmethod
    def paper(cls, patch: int) -> "UNetOptions":
        """About 4.2–4.7 M parameters for RGB (the paper's Table 3 lists 4.3–5.1 M for P = 5…11).

        Widths shrink with P because the larger kernels land on wider levels.
        """
        return cls(channels=_PAPER_CHANNELS.get(patch, (64, 128, 320)), layers_per_block=1, norm_groups=16)


def _slots(levels: int, layers_per_block: int) -> list[str]:
    """Names of the convolutions on the longest path, in the order radius is handed out."""
    order = ["conv_in", "conv_out"]
    for level in range(levels):
        order += [f"down.{level}.{j}" for j in range(layers_per_block)]
        ups = layers_per_block + (1 if level == levels - 1 else 0)
        order += [f"up.{level}.{j}" for j in range(ups)]
    return order + ["mid"]


def kernel_plan(patch: int, levels: int, layers_per_block: int) -> dict[str, int]:
    """Kernel size of every convolution on the longest path, with ``1 + Σ(k-1) = patch``."""
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch must be odd and >= 1, got {patch}")
    slots = _slots(levels, layers_per_block)
    radius = dict.fromkeys(slots, 0)
    for unit in range((patch - 1) // 2):
        radius[slots[unit % len(slots)]] += 1
    return {name: 2 * r + 1 for name, r in radius.items()}


class _ResBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = PixelGroupNorm(groups, cin) if cin % groups == 0 and cin // groups >= 2 else PixelGroupNorm(1, cin)
        self.conv1 = circular_conv(cin, cout, kernel)
        self.emb = torch.nn.Linear(emb_dim, cout)
        self.norm2 = PixelGroupNorm(groups, cout)
        self.conv2 = circular_conv(cout, cout, 1)
        self.skip = circular_conv(cin, cout, 1) if cin != cout else torch.nn.Identity()
        self.act = torch.nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.conv1(self.act(self.norm1(h))) + self.emb(emb)[:, :, None, None]
        z = self.conv2(self.act(self.norm2(z)))
        return self.skip(h) + z


class UNet(torch.nn.Module):
    """``UNet(in_channels, patch, options)(v, σ)``: ``(B, C, H, W)`` → ``(B, C, H, W)``."""

    def __init__(self, in_channels: int, patch: int, options: UNetOptions | None = None):
        super().__init__()
        opt = options or UNetOptions()
        self.patch = patch
        ch, lpb, groups = opt.channels, opt.layers_per_block, opt.norm_groups
        levels = len(ch)
        self.kernels = kernel_plan(patch, levels, lpb)
        emb_dim = 4 * ch[0]
        self.sigma_embedding = SigmaEmbedding(ch[0])
        self.emb_mlp = torch.nn.Sequential(torch.nn.Linear(ch[0], emb_dim), torch.nn.SiLU(),
                                           torch.nn.Linear(emb_dim, emb_dim), torch.nn.SiLU())
        self.conv_in = circular_conv(in_channels, ch[0], self.kernels["conv_in"])

        skips = [ch[0]]
        width = ch[0]
        self.down = torch.nn.ModuleList()
        for level in range(levels):
            for j in range(lpb):
                self.down.append(_ResBlock(width, ch[level], self.kernels[f"down.{level}.{j}"], emb_dim, groups))
                width = ch[level]
                skips.append(width)
        self.mid = _ResBlock(width, width, self.kernels["mid"], emb_dim, groups)
        self.up = torch.nn.ModuleList()
        for level in reversed(range(levels)):
            for j in range(lpb + (1 if level == levels - 1 else 0)):
                self.up.append(_ResBlock(width + skips.pop(), ch[level], self.kernels[f"up.{level}.{j}"],
                                         emb_dim, groups))
                width = ch[level]
        assert not skips
        self.norm_out = PixelGroupNorm(groups, width)
        self.conv_out = circular_conv(width, in_channels, self.kernels["conv_out"])
        self.act = torch.nn.SiLU()
        # Channels-last (NHWC) memory throughout: the per-pixel norms then reduce over the
        # innermost axis without copies, and oneDNN convolutions run natively (-30 % a step).
        self.to(memory_format=torch.channels_last)

    def forward(self, v: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        emb = self.emb_mlp(self.sigma_embedding(sigma_batch(sigma, v.shape[0], v)))
        h = self.conv_in(v.contiguous(memory_format=torch.channels_last))
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.conv_out(self.act(self.norm_out(h))).contiguous()
