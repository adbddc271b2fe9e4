r"""Deconvolution: circular convolution with an isotropic Gaussian blur of std ``s`` pixels.

The kernel lives on the whole ``H×W`` grid, ``g(d) ∝ exp(-‖d‖²/2s²)`` for circular offsets
``d ∈ [-H//2, H-H//2) × [-W//2, W-W//2)``, normalised to sum 1 (MATH.md, "Tasks").

Pre-inverses, all circular convolutions computed in float64 on the spectrum ``\hat a``:

* ``adjoint``: ``\overline{\hat a}``;
* ``pinv``: ``1/\hat a`` where ``|\hat a| > ε·max|\hat a|``, else 0 (truncated SVD; ``A A⁺ A = A``);
* ``tikhonov``: ``\overline{\hat a} / (|\hat a|² + λ)``.
"""
from __future__ import annotations

import math

import torch

from lemmse.errors import LemmseInputError
from lemmse.operators.base import InverseProblem
from lemmse.operators.linear_maps import CircularConvolution, CircularLinearMap

#: Relative spectral threshold of the pseudo-inverse.
PINV_EPS = 1e-6


def gaussian_kernel(image_size: tuple[int, int], std: float) -> torch.Tensor:
    """Float64 ``(H, W)`` circular Gaussian kernel, offset ``d`` stored at index ``d mod (H, W)``."""
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
        raise LemmseInputError(f"blur std must be a finite number > 0, got {std!r}")
    h, w = image_size
    dy = torch.arange(-(h // 2), h - h // 2, dtype=torch.float64)
    dx = torch.arange(-(w // 2), w - w // 2, dtype=torch.float64)
    kernel = torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * std**2))
    kernel = kernel / kernel.sum()
    return torch.roll(kernel, shifts=(-(h // 2), -(w // 2)), dims=(0, 1))


class Deconvolution(InverseProblem):
    name = "deconvolution"
    allowed_preinverses = ("identity", "adjoint", "pinv", "tikhonov")

    def __init__(self, image_size: tuple[int, int], blur_std: float = 1.0, pinv_eps: float = PINV_EPS):
        super().__init__(CircularConvolution.from_kernel(gaussian_kernel(image_size, blur_std)))
        self.blur_std = float(blur_std)
        self.pinv_eps = float(pinv_eps)

    @property
    def spectrum(self) -> torch.Tensor:
        return self.forward_map.spectrum

    def pinv_map(self) -> CircularLinearMap:
        a = self.spectrum
        keep = a.abs() > self.pinv_eps * a.abs().max()
        inv = torch.where(keep, 1.0 / torch.where(keep, a, torch.ones_like(a)), torch.zeros_like(a))
        return CircularConvolution(inv)

    def tikhonov_map(self, lam: float) -> CircularLinearMap:
        a = self.spectrum
        return CircularConvolution(a.conj() / (a.abs() ** 2 + lam))
