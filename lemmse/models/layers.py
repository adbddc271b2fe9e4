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
    return CircularConv2d(in_channels, out_channels, kernel, padding=kernel // 2,
                          padding_mode="circular" if kernel > 1 else "zeros", bias=bias)


class CircularConv2d(torch.nn.Conv2d):
    r"""``torch.nn.Conv2d`` with circular padding, computed by cheaper kernels where its shape allows.

    When ``C_out·k² ≤ C_in`` (a UNet's ``conv_out``: 16 channels in, one image channel out) the
    convolution is evaluated as one 1×1 convolution to ``C_out·k²`` maps, one per output channel
    ``o`` and tap ``(a, b)``, followed by the sum of their circular shifts:

    .. math::

        z_{o,a,b}(n) = \sum_c W_{o,c,a,b}\, x_c(n), \qquad
        y_o(n) = β_o + \sum_{a,b} z_{o,a,b}\big(n + (a - r, b - r)\big) \bmod (H, W),

    the same sums as the direct convolution taken in another order (equal to rounding). Its maps
    hold no more numbers than its input, where the direct path pads all ``C_in`` channels
    (``F.pad``'s circular backward alone costs as much as the convolution) and runs oneDNN's
    direct kernel with one output channel: a forward + backward of the small UNet's
    ``conv_out`` on a batch of 32 16×16 images took about half the time (1.5 against 3.0 ms,
    one thread). A 1×1 convolution of a channels-last input is one matrix product
    (``F.linear`` over the channel axis). Every other shape takes ``torch.nn.Conv2d``'s own path.
    Parameters and state dict are ``Conv2d``'s.
    """

    @property
    def by_taps(self) -> bool:
        """Whether :meth:`forward` sums shifted taps (``k > 1`` and ``C_out·k² ≤ C_in``)."""
        k = self.kernel_size[0]
        return k > 1 and self.out_channels * k * k <= self.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size[0] == 1 and x.is_contiguous(memory_format=torch.channels_last):
            # A 1×1 convolution of channels-last features is a matrix product over their
            # innermost axis: one GEMM, ~5 % off the small UNet's step against oneDNN's 1×1 kernel.
            return F.linear(x.permute(0, 2, 3, 1), self.weight[:, :, 0, 0], self.bias).permute(0, 3, 1, 2)
        if not self.by_taps:
            return super().forward(x)
        k = self.kernel_size[0]
        r = k // 2
        h, w = x.shape[-2:]
        # Taps as output channels, ordered (a, b, o): tap t = a·k + b holds channels t·C_out … .
        taps = self.weight.permute(2, 3, 0, 1).reshape(k * k * self.out_channels, self.in_channels, 1, 1)
        z = wrap_pad(F.conv2d(x, taps), r)
        y = None
        for a in range(k):
            for b in range(k):
                t = (a * k + b) * self.out_channels
                shifted = z[:, t:t + self.out_channels, a:a + h, b:b + w]
                y = shifted if y is None else y + shifted
        return y if self.bias is None else y + self.bias[:, None, None]


def wrap_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Circular padding of the last two axes by ``r`` (``F.pad(x, (r,) * 4, mode="circular")``) that
    keeps ``x``'s memory format (two concatenations)."""
    x = torch.cat([x[..., -r:, :], x, x[..., :r, :]], dim=-2)
    return torch.cat([x[..., -r:], x, x[..., :r]], dim=-1)


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
