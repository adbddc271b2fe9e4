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


def _seed(*key: int) -> int:
    """The 64-bit seed of the generator keyed by ``key``: ``SeedSequence(key).generate_state(1, uint64)``."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0])


def _generator(*key: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*key))


# NumPy's SeedSequence constants (numpy/random/bit_generator.pyx; O'Neill's seed_seq_fe).
_POOL, _INIT_A, _MULT_A, _INIT_B, _MULT_B = 4, 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R, _SHIFT, _MASK = 0xCA01F9DD, 0x4973F715, 16, 0xFFFFFFFF


def _seeds(prefix: tuple[int, ...], last: np.ndarray) -> np.ndarray:
    r"""``_seed(*prefix, t)`` for every ``t`` of ``last``, in one pass of array operations.

    NumPy's ``SeedSequence`` hashes its entropy words into a pool of four 32-bit words and hashes
    the pool into the output; every step is 32-bit arithmetic whose constants do not depend on the
    data, so it runs on all ``t`` at once (32 seeds: ~0.1 ms against ~0.27 ms one ``SeedSequence``
    at a time, one core). Valid when the entropy has fewer words than the pool (every key below ``2³²``, at
    most three of them); other keys take ``SeedSequence`` itself. Checked bit for bit against it.
    """
    last = np.asarray(last, dtype=np.uint64)
    if len(prefix) + 1 >= _POOL or any(not 0 <= k <= _MASK for k in prefix) or (last > _MASK).any():
        return np.array([_seed(*prefix, int(t)) for t in last], dtype=np.uint64)
    words = [np.full(last.shape, k, dtype=np.uint64) for k in prefix] + [last]
    words += [np.zeros(last.shape, dtype=np.uint64)] * (_POOL - len(words))  # the pool runs the hash out
    hash_const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_const
        value = value ^ hash_const
        hash_const = (hash_const * _MULT_A) & _MASK
        value = (value * hash_const) & _MASK
        return value ^ (value >> _SHIFT)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = (_MIX_L * x - _MIX_R * y) & _MASK  # uint64 wraps modulo 2⁶⁴, then to 32 bits
        return result ^ (result >> _SHIFT)

    pool = [hashmix(w) for w in words]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    out, hash_const = [], _INIT_B
    for word in pool[:2]:  # one uint64 = two 32-bit words, little end first
        value = word ^ hash_const
        hash_const = (hash_const * _MULT_B) & _MASK
        value = (value * hash_const) & _MASK
        out.append(value ^ (value >> _SHIFT))
    return out[0] | (out[1] << np.uint64(32))


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
        self._batch_generator = torch.Generator()

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=_generator(self.seed, _PERMUTATION, epoch))
            self._epoch = epoch
        return self._perm

    def sample(self, t: int) -> tuple[int, float, torch.Tensor]:
        index = int(self.permutation(t // self.n)[t % self.n])
        gen = _generator(self.seed, _SAMPLE, t)
        sigma = self.sigma(float(torch.rand((), generator=gen, dtype=torch.float64)))
        return index, sigma, torch.randn(self.shape, generator=gen)

    def sigma(self, u: float) -> float:
        """``σ_t`` of the uniform draw ``u_t`` (module docstring)."""
        if self.sampling == "log-uniform":
            return self.sigma_min * (self.sigma_max / self.sigma_min) ** u
        return self.sigma_min + (self.sigma_max - self.sigma_min) * u

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The samples of ``step``: bit for bit ``sample(t)`` for each of its ``t``, at two thirds of the
        cost (the seeds in one array pass, one generator re-seeded per sample, the noise drawn into
        the batch; 0.57 against 0.89 ms for 32 samples of 16×16), a few percent of a small preset's
        training step."""
        first = (step - 1) * self.batch_size
        ts = np.arange(first, first + self.batch_size, dtype=np.uint64)
        seeds = _seeds((self.seed, _SAMPLE), ts)
        indices = torch.tensor([int(self.permutation(t // self.n)[t % self.n]) for t in ts.tolist()], dtype=torch.long)
        noise = torch.empty((self.batch_size, *self.shape))
        sigma, gen = [], self._batch_generator
        for i, seed in enumerate(seeds.tolist()):
            gen.manual_seed(seed)
            sigma.append(self.sigma(float(torch.rand((), generator=gen, dtype=torch.float64))))
            torch.randn(self.shape, generator=gen, out=noise[i])
        return indices, torch.tensor(sigma, dtype=torch.float32), noise
