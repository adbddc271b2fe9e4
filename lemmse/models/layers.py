r"""Building blocks shared by the architectures: circular convolutions and a local group norm.

Locality and normalisation
--------------------------
The theory compares a network with the LE-MMSE, whose output at pixel ``n`` is a function of
the ``P×P`` patch of ``B y`` around ``n`` only. Any statistic pooled over the spatial positions
of an image (``torch.nn.GroupNorm``, a LayerNorm over ``(C, H, W)``, InstanceNorm) couples every
pixel to every other one and breaks that exactly. We therefore only normalise **per pixel**:

* :class:`PixelGroupNorm` (UNet) normalises, at each pixel separately, the channels of each group
  — a GroupNorm whose statistics pool over channel groups, never over space (the ConvNeXt
  "channels LayerNorm" is the case ``groups = 1``);
* the PatchMLP uses ``torch.nn.LayerNorm`` over the feature vector of one patch (one pixel);
* the ResNet keeps the paper's BatchNorm: in evaluation mode it uses running statistics, i.e. a
  fixed per-channel affine map, which is local and equivariant. In training mode its batch
  statistics pool over the batch and space — as in the paper; the network that is compared with
  the theory (and every receptive-field / equivariance test) is the evaluation-mode one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def circular_conv(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> torch.nn.Conv2d:
    """A stride-1 ``kernel×kernel`` convolution with circular padding (output on the input grid)."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 1, got {kernel}")
    return torch.nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2,
                           padding_mode="circular" if kernel > 1 else "zeros", bias=bias)


class PixelGroupNorm(torch.nn.Module):
    r"""Group normalisation over channels at each pixel: no statistic crosses pixels (``groups = 1``: a per-pixel LayerNorm over all channels, the UNet default).

    For features ``h`` of shape ``(B, C, H, W)`` split into ``G`` groups ``g`` of ``C/G`` channels,

    .. math::

        \hat h_{c,n} = γ_c \frac{h_{c,n} - μ_{g,n}}{\sqrt{v_{g,n} + ε}} + β_c, \qquad
        μ_{g,n} = \frac{G}{C}\sum_{c' ∈ g} h_{c',n}, \quad
        v_{g,n} = \frac{G}{C}\sum_{c' ∈ g} (h_{c',n} - μ_{g,n})^2 .

    Each group needs at least two channels (one channel would normalise to a constant).
    """

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__()
        if groups < 1 or channels % groups or channels // groups < 2:
            raise ValueError(f"PixelGroupNorm needs channels ({channels}) divisible by groups ({groups}) "
                             f"with at least 2 channels per group")
        self.groups = groups
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        # Channels-last view: the statistic runs over the innermost axis, where layer_norm is one
        # fused kernel (torch.var over a short strided axis costs several times the convolutions).
        last = h.permute(0, 2, 3, 1)
        if self.groups == 1:
            z = F.layer_norm(last, (c,), self.weight, self.bias, self.eps)
        else:
            z = F.layer_norm(last.reshape(b, hh, ww, self.groups, c // self.groups), (c // self.groups,),
                             eps=self.eps).reshape(b, hh, ww, c) * self.weight + self.bias
        return z.permute(0, 3, 1, 2)
