r"""Circular linear maps on images ``(batch, C, H, W)``, applied identically to every channel.

Two families cover every operator and pre-inverse of the project:

* :class:`CircularConvolution` — ``B v = F^{-1}( \\hat b \cdot F v )`` with a spectrum
  ``\\hat b`` on the ``H×W`` grid (the identity is the all-ones spectrum);
* :class:`PixelWeights` — ``B v = b \odot v`` with per-pixel weights ``b`` (a mask for inpainting).

Both keep their data in registered buffers, so ``.to(device)`` moves them and nothing depends
on a patch size. Arithmetic is done in float64 and cast back to the input dtype.
"""
from __future__ import annotations

import torch

#: Relative tolerance under which a singular value (spectrum entry) counts as zero.
RANK_RTOL = 1e-12


class CircularLinearMap(torch.nn.Module):
    """Base class: subclasses define ``forward`` (apply ``B``), ``adjoint`` and ``_grid``."""

    kind: str = "generic"

    @property
    def shape_hw(self) -> tuple[int, int]:
        return tuple(self._grid.shape[-2:])  # type: ignore[attr-defined]

    def check_image(self, v: torch.Tensor, name: str = "image") -> None:
        """Raise if ``v`` is not a ``(batch, C, H, W)`` tensor on this map's grid."""
        if v.ndim != 4 or tuple(v.shape[-2:]) != self.shape_hw:
            raise ValueError(f"{name} has shape {tuple(v.shape)}; expected (batch, C, {self.shape_hw[0]}, {self.shape_hw[1]})")

    def dense_matrix(self, channels: int) -> torch.Tensor:
        """The map as an explicit float64 ``(C·H·W, C·H·W)`` matrix (small images only)."""
        h, w = self.shape_hw
        n = channels * h * w
        basis = torch.eye(n, dtype=torch.float64, device=self._grid.device).reshape(n, channels, h, w)
        return self(basis).reshape(n, n).T.contiguous()

    def noise_gain(self) -> float:
        r"""Mean per-pixel variance of ``B e`` for white unit noise ``e``: ``‖B‖_F² / (H·W)`` per channel.

        Generic (dense, small images); the subclasses compute it from their spectrum or weights.
        """
        h, w = self.shape_hw
        return float((self.dense_matrix(1) ** 2).sum()) / (h * w)


class CircularConvolution(CircularLinearMap):
    r"""Circular convolution with spectrum ``\\hat b`` (complex128, shape ``(H, W)``)."""

    kind = "convolution"

    def __init__(self, spectrum: torch.Tensor, identity: bool = False):
        super().__init__()
        self.register_buffer("spectrum", spectrum.to(torch.complex128))
        self.identity = identity

    @property
    def _grid(self) -> torch.Tensor:
        return self.spectrum

    @classmethod
    def eye(cls, h: int, w: int) -> "CircularConvolution":
        return cls(torch.ones(h, w, dtype=torch.complex128), identity=True)

    @classmethod
    def from_kernel(cls, kernel: torch.Tensor) -> "CircularConvolution":
        """Convolution with a kernel given on the ``H×W`` grid, offset ``d`` stored at ``d mod (H, W)``."""
        return cls(torch.fft.fft2(kernel.to(torch.float64)))

    def _apply_spectrum(self, v: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
        self.check_image(v)
        if self.identity:
            return v.clone()
        out = torch.fft.ifft2(torch.fft.fft2(v.to(torch.float64)) * spectrum).real
        return out.to(v.dtype)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self._apply_spectrum(v, self.spectrum)

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        return self._apply_spectrum(v, self.spectrum.conj())

    def noise_gain(self) -> float:
        r"""``‖B‖_F²/(H·W) = mean_ω |\\hat b(ω)|²`` (Parseval)."""
        return float((self.spectrum.abs() ** 2).mean())

    def kept_frequencies(self) -> torch.Tensor:
        """Boolean ``(H, W)``: frequencies where ``|\\hat b|`` is not numerically zero (``Im Bᵀ``)."""
        mag2 = self.spectrum.abs() ** 2
        return mag2 > RANK_RTOL * mag2.max()

    def autocorrelation(self) -> torch.Tensor:
        r"""Kernel of ``B Bᵀ`` on the grid: ``r = F^{-1} |\\hat b|^2`` (float64, ``(H, W)``)."""
        return torch.fft.ifft2(self.spectrum.abs() ** 2).real


class PixelWeights(CircularLinearMap):
    """Pointwise multiplication by per-pixel weights ``b`` (float64, shape ``(H, W)``)."""

    kind = "diagonal"

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.register_buffer("weights", weights.to(torch.float64))

    @property
    def _grid(self) -> torch.Tensor:
        return self.weights

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        self.check_image(v)
        return (v.to(torch.float64) * self.weights).to(v.dtype)

    adjoint = forward

    def noise_gain(self) -> float:
        """``‖B‖_F²/(H·W) = mean_n b_n²``."""
        return float((self.weights ** 2).mean())

    def support(self) -> torch.Tensor:
        """Boolean ``(H, W)``: pixels with a non-zero weight. Decided from the weights, never from data."""
        return self.weights != 0
