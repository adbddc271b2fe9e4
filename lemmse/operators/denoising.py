"""Denoising: ``A = I``; the only pre-inverse is the identity."""
from __future__ import annotations

from lemmse.operators.base import InverseProblem
from lemmse.operators.linear_maps import CircularConvolution, CircularLinearMap


class Denoising(InverseProblem):
    name = "denoising"
    allowed_preinverses = ("identity",)

    def __init__(self, image_size: tuple[int, int]):
        super().__init__(CircularConvolution.eye(*image_size))

    def pinv_map(self) -> CircularLinearMap:
        return CircularConvolution.eye(*self.image_size).to(self.forward_map.spectrum.device)
