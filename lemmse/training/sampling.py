r"""Which image, which σ and which noise each training sample gets — independent of batch size.

Training consumes one stream of samples ``t = 0, 1, 2, …``; step ``s`` (1-based) with batch size
``B`` takes samples ``t = (s-1)B, …, sB-1``. Sample ``t`` is

* image ``π_e(t mod N)`` with ``e = ⌊t / N⌋`` the epoch and ``π_e`` a permutation of the ``N``
  training images drawn from a generator seeded by ``(seed, e)``;
* ``σ_t = σ_min + (σ_max - σ_min) u_t`` (``sampling = "uniform"``, the paper's) or
  ``σ_t = σ_min (σ_max / σ_min)^{u_t}`` (``"log-uniform"``, ``σ_min > 0``: as many samples in
  [0.01, 0.1] as in [0.1, 1], where a uniform draw puts 9 % of them), with ``u_t ~ U[0, 1)``, and
  noise ``ε_t ~ N(0, I)``, from a generator seeded by ``(seed, t)`` (``u_t`` first, then ``ε_t``).

The σ distribution changes how the training loss weighs the noise levels, not what a
σ-conditioned network converges to at each σ (the LE-MMSE at that σ, for any distribution whose
support holds it).

Everything is drawn on the CPU, so a run on CUDA sees exactly the samples a CPU run sees, and
a resumed run needs no RNG state: step ``s`` is a function of ``(seed, s)`` alone.
"""
from __future__ import annotations

import numpy as np
import torch

_PERMUTATION, _SAMPLE = 1, 2

#: How σ is drawn over ``[sigma_min, sigma_max]`` (see the module docstring).
SIGMA_SAMPLINGS = ("uniform", "log-uniform")


def _generator(*key: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed)


class SampleStream:
    """``stream.batch(step)`` → ``(indices, sigma, noise)`` on the CPU for 1-based ``step``."""

    def __init__(self, train_size: int, image_shape: tuple[int, int, int], batch_size: int,
                 sigma_min: float, sigma_max: float, seed: int, sampling: str = "uniform"):
        if sampling not in SIGMA_SAMPLINGS:
            raise ValueError(f"sigma sampling {sampling!r}: choose one of {', '.join(SIGMA_SAMPLINGS)}")
        if sampling == "log-uniform" and not 0 < sigma_min:
            raise ValueError(f"log-uniform sigma sampling needs sigma_min > 0, got {sigma_min}")
        self.n = train_size
        self.shape = tuple(image_shape)
        self.batch_size = batch_size
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.seed = seed
        self.sampling = sampling
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=_generator(self.seed, _PERMUTATION, epoch))
            self._epoch = epoch
        return self._perm

    def sample(self, t: int) -> tuple[int, float, torch.Tensor]:
        index = int(self.permutation(t // self.n)[t % self.n])
        gen = _generator(self.seed, _SAMPLE, t)
        u = float(torch.rand((), generator=gen, dtype=torch.float64))
        if self.sampling == "log-uniform":
            sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** u
        else:
            sigma = self.sigma_min + (self.sigma_max - self.sigma_min) * u
        return index, sigma, torch.randn(self.shape, generator=gen)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first = (step - 1) * self.batch_size
        samples = [self.sample(t) for t in range(first, first + self.batch_size)]
        indices = torch.tensor([s[0] for s in samples], dtype=torch.long)
        sigma = torch.tensor([s[1] for s in samples], dtype=torch.float32)
        return indices, sigma, torch.stack([s[2] for s in samples])
