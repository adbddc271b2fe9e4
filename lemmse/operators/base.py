r"""The forward model ``y = A x + e`` of one task, with its pre-inverses ``B``.

A task object is built for one image grid ``(H, W)`` and any channel count. It exposes

* ``A(x)``, ``A_adjoint(y)``, ``A_dagger(y)`` on batches ``(batch, C, H, W)``;
* :meth:`InverseProblem.preinverse` — the map ``B`` for ``identity``, ``adjoint``, ``pinv`` or
  ``tikhonov`` (``(AᵀA + λI)^{-1}Aᵀ``), rejecting those that do not fit the task;
* :meth:`InverseProblem.le_mmse_case` — which exact LE-MMSE formula of MATH.md applies to ``B``:
  1 for a circular convolution, 2 for a pixel mask, 3 otherwise.

Nothing here depends on a patch size, so one object serves every ``P``.
"""
from __future__ import annotations

import math

import torch

from lemmse.errors import LemmseInputError
from lemmse.operators.linear_maps import CircularConvolution, CircularLinearMap, PixelWeights

PREINVERSES = ("identity", "adjoint", "pinv", "tikhonov")


class InverseProblem(torch.nn.Module):
    """Base class of the three tasks.

    Subclasses set ``name`` and ``allowed_preinverses`` and define ``pinv_map()`` (and
    ``tikhonov_map(lam)`` when Tikhonov is allowed).
    """

    name: str = ""
    #: pre-inverses that make sense for this task (MATH.md, "Tasks")
    allowed_preinverses: tuple[str, ...] = ("identity",)

    def __init__(self, forward_map: CircularLinearMap):
        super().__init__()
        self.forward_map = forward_map

    @property
    def image_size(self) -> tuple[int, int]:
        return self.forward_map.shape_hw

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.forward_map.adjoint(y)

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        return self.pinv_map()(y)

    def measure(self, x: torch.Tensor, sigma: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``y = A x + σ·noise`` (noise on every pixel, masked ones included; no clipping)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return self.A(x) + sigma * noise

    def preinverse(self, name: str, lam: float | None = None) -> CircularLinearMap:
        """The pre-inverse ``B`` called ``name``; ``lam`` is required (> 0) for ``tikhonov`` only."""
        if name not in PREINVERSES:
            raise LemmseInputError(f"unknown pre-inverse {name!r}; choose one of {', '.join(PREINVERSES)}")
        if name not in self.allowed_preinverses:
            raise LemmseInputError(
                f"pre-inverse {name!r} does not fit task {self.name!r}; "
                f"it accepts {', '.join(self.allowed_preinverses)}"
            )
        if name == "tikhonov":
            if lam is None or not math.isfinite(lam) or lam <= 0:
                raise LemmseInputError(f"tikhonov pre-inverse needs a finite lambda > 0, got lam={lam!r}")
        elif lam is not None:
            raise LemmseInputError(f"lam={lam!r} given but pre-inverse {name!r} takes no lambda")
        h, w = self.image_size
        device = self.forward_map._grid.device
        if name == "identity":
            return CircularConvolution.eye(h, w).to(device)
        if name == "adjoint":
            return _adjoint_of(self.forward_map)
        if name == "pinv":
            return self.pinv_map()
        return self.tikhonov_map(float(lam))

    @staticmethod
    def le_mmse_case(B: CircularLinearMap) -> int:
        """1: ``B`` a circular convolution (whitened features); 2: ``B`` a pixel mask; 3: general."""
        if isinstance(B, CircularConvolution):
            return 1
        if isinstance(B, PixelWeights) and bool(((B.weights == 0) | (B.weights == 1)).all()):
            return 2
        return 3


def _adjoint_of(m: CircularLinearMap) -> CircularLinearMap:
    if isinstance(m, CircularConvolution):
        return CircularConvolution(m.spectrum.conj(), identity=m.identity)
    if isinstance(m, PixelWeights):
        return PixelWeights(m.weights.clone())
    raise TypeError(f"no adjoint for {type(m).__name__}")
