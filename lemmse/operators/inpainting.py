"""Inpainting: ``A = diag(m)`` with a centred square hole of side ``s``.

The hole covers rows and columns ``[H//2 - s//2, H//2 - s//2 + s)``. ``A⁺ = Aᵀ = diag(m)``.
"""
from __future__ import annotations

import torch

from lemmse.errors import LemmseInputError
from lemmse.operators.base import InverseProblem
from lemmse.operators.linear_maps import CircularLinearMap, PixelWeights


def centred_hole_mask(image_size: tuple[int, int], hole: int) -> torch.Tensor:
    """Float64 ``(H, W)`` mask: 0 inside the centred ``hole × hole`` square, 1 elsewhere."""
    h, w = image_size
    if not isinstance(hole, int) or hole < 0 or hole > min(h, w):
        raise LemmseInputError(f"hole side {hole!r} must be an integer in [0, {min(h, w)}] for {h}x{w} images")
    mask = torch.ones(h, w, dtype=torch.float64)
    r0, c0 = h // 2 - hole // 2, w // 2 - hole // 2
    mask[r0 : r0 + hole, c0 : c0 + hole] = 0.0
    return mask


class Inpainting(InverseProblem):
    name = "inpainting"
    allowed_preinverses = ("identity", "adjoint", "pinv")

    def __init__(self, image_size: tuple[int, int], hole: int):
        super().__init__(PixelWeights(centred_hole_mask(image_size, hole)))
        self.hole = hole

    @property
    def mask(self) -> torch.Tensor:
        return self.forward_map.weights

    def pinv_map(self) -> CircularLinearMap:
        return PixelWeights(self.mask.clone())
