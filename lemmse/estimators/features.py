r"""Patch features of the two exact fast LE-MMSE cases, and the projector onto ``Im Bᵀ``.

**Case 1, ``B`` a circular convolution.** ``Q_n Q_nᵀ = Σ`` is the same for every ``n``:
``Σ_{ij} = r(o_i - o_j)`` with ``r = F^{-1}|\hat b|²`` the kernel of ``BBᵀ`` and ``o_i`` the patch
offsets (per channel; channels are independent). With ``Σ = U Λ Uᵀ`` restricted to eigenvalues
above ``RANK_RTOL·λ_max``, the whitened feature ``f(v) = Λ^{-1/2} Uᵀ v`` turns every weight into
``exp(-‖f(Π_{n'}By) - f(Π_n BAx_d)‖² / 2σ²)``. For ``B = I`` no whitening is applied.

**Case 2, ``B = diag(m)``.** ``Q_n Q_nᵀ = diag(Π_n m)``. Positions are grouped into *strata* by
their patch mask pattern ``Π_n m`` — computed from the mask, never from measured values — and a
query only meets keys of its own pattern, compared on the observed entries.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lemmse.estimators.patches import circular_patches, patch_offsets
from lemmse.operators.linear_maps import RANK_RTOL, CircularConvolution, CircularLinearMap, PixelWeights


@dataclass
class Stratum:
    """Positions sharing one patch pattern, and which patch entries they observe."""

    positions: torch.Tensor  # (S,) long, flat indices i·W + j
    observed: torch.Tensor  # (P²,) bool
    rank: int  # rank of Q_n Q_nᵀ over all channels
    log_pdet: float  # log pseudo-determinant of Q_n Q_nᵀ over all channels


class PatchFeatures:
    """Strata and feature maps of ``Q_n = Π_n B`` for a case-1 or case-2 pre-inverse."""

    def __init__(self, B: CircularLinearMap, patch: int, channels: int):
        self.patch, self.channels = patch, channels
        h, w = B.shape_hw
        device = B._grid.device
        self.whitening: torch.Tensor | None = None
        if isinstance(B, CircularConvolution):
            rank, log_pdet = patch * patch, 0.0
            if not B.identity:
                self.whitening, evals = whitening_matrix(B, patch)
                rank, log_pdet = self.whitening.shape[1], float(torch.log(evals).sum())
            everywhere = torch.ones(patch * patch, dtype=torch.bool, device=device)
            self.strata = [Stratum(torch.arange(h * w, device=device), everywhere,
                                   channels * rank, channels * log_pdet)]
        elif isinstance(B, PixelWeights):
            self.strata = mask_strata(B, patch, channels)
        else:
            raise TypeError(f"no fast LE-MMSE features for {type(B).__name__}")

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """Patch coordinates of ``images`` ``(b, C, H, W)`` → ``(b, H·W, C, f)`` float64 (whitened in case 1)."""
        patches = circular_patches(images, self.patch)
        b, hw, _ = patches.shape
        patches = patches.reshape(b, hw, self.channels, -1)
        return patches if self.whitening is None else patches @ self.whitening

    def select(self, transformed: torch.Tensor, stratum: Stratum) -> torch.Tensor:
        """Features of the stratum's positions: ``(b·S, F)``, observed entries only."""
        b = transformed.shape[0]
        sel = transformed[:, stratum.positions]
        if self.whitening is None:
            sel = sel[..., stratum.observed]
        return sel.reshape(b * len(stratum.positions), -1)


def whitening_matrix(B: CircularConvolution, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``W = U Λ^{-1/2}`` ``(P², r)`` and the kept eigenvalues of the patch covariance of ``BBᵀ``."""
    r = B.autocorrelation()
    h, w = r.shape
    off = patch_offsets(patch).to(r.device)
    diff = off[:, None, :] - off[None, :, :]
    sigma = r[diff[..., 0] % h, diff[..., 1] % w]
    sigma = 0.5 * (sigma + sigma.T)
    evals, evecs = torch.linalg.eigh(sigma)
    keep = evals > RANK_RTOL * evals.max()
    return evecs[:, keep] / torch.sqrt(evals[keep]), evals[keep]


def mask_strata(B: PixelWeights, patch: int, channels: int) -> list[Stratum]:
    """Group positions by the pattern ``Π_n m`` of the mask (weights must be 0 or 1)."""
    support = B.support().to(torch.float64)
    patterns = circular_patches(support[None, None], patch)[0] > 0.5  # (H·W, P²)
    unique, inverse = torch.unique(patterns, dim=0, return_inverse=True)
    strata = []
    for k in range(unique.shape[0]):
        observed = unique[k]
        rank = channels * int(observed.sum())
        strata.append(Stratum((inverse == k).nonzero().flatten(), observed, rank, 0.0))
    return strata


def projector(B: CircularLinearMap):
    """The orthogonal projector onto ``Im Bᵀ`` as a function on images (float64)."""
    if isinstance(B, CircularConvolution):
        keep = B.kept_frequencies()
        if bool(keep.all()):
            return lambda v: v
        return lambda v: torch.fft.ifft2(torch.fft.fft2(v) * keep).real
    if isinstance(B, PixelWeights):
        support = B.support().to(torch.float64)
        return lambda v: v * support
    raise TypeError(f"no projector for {type(B).__name__}")
