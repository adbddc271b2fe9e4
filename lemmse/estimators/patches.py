"""Circular patch extraction ``Π_n`` for every pixel ``n`` at once."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def circular_patches(v: torch.Tensor, patch: int) -> torch.Tensor:
    """All ``P×P`` circular patches of ``v`` ``(b, C, H, W)`` → ``(b, H·W, C·P²)``.

    Row ``n = i·W + j`` holds the patch centred at pixel ``(i, j)``, entries ordered
    channel-major then row-major over offsets ``(-P//2 … P//2)²``.
    """
    b, c, h, w = v.shape
    r = patch // 2
    padded = F.pad(v, (r, r, r, r), mode="circular") if r else v
    cols = F.unfold(padded, kernel_size=patch)  # (b, C·P², H·W)
    return cols.transpose(1, 2).reshape(b, h * w, c * patch * patch)


def patch_offsets(patch: int) -> torch.Tensor:
    """Integer offsets ``(P², 2)`` of a patch, row-major, in the order of :func:`circular_patches`."""
    r = patch // 2
    ar = torch.arange(-r, r + 1)
    return torch.stack(torch.meshgrid(ar, ar, indexing="ij"), dim=-1).reshape(-1, 2)
