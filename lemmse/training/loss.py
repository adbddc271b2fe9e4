r"""The training objective: measurements made on the fly, pre-inverse, network, MSE.

For clean images ``x``, noise levels ``σ`` and standard normal ``ε``,

.. math::

    y = A x + σ ε, \qquad \hat x = f_θ(B y, σ), \qquad
    L(θ) = \frac{1}{|batch|\,CHW} \sum_b \lVert \hat x_b - x_b \rVert^2,

whose minimiser over local, equivariant ``f_θ`` is the LE-MMSE of the empirical distribution
(the theory this package checks). The loss object owns ``A`` and ``B``; the network stays a
plain ``f(v, σ)``.
"""
from __future__ import annotations

import torch

from lemmse.operators import InverseProblem


class MeasurementLoss(torch.nn.Module):
    """``loss(net, x, sigma, noise)`` → scalar MSE between ``net(B(Ax + σε), σ)`` and ``x``."""

    def __init__(self, problem: InverseProblem, preinverse: torch.nn.Module):
        super().__init__()
        self.problem = problem
        self.preinverse = preinverse

    def inputs(self, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The network input ``B y`` for ``y = A x + σ ε``."""
        return self.preinverse(self.problem.measure(x, sigma, noise))

    def forward(self, net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        return torch.mean((net(self.inputs(x, sigma, noise), sigma) - x) ** 2)
