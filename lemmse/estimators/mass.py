r"""Exact 99 %-mass counts by histogram refinement over repeated streaming passes.

Once the normaliser ``Z`` is known, the number of largest weights whose sum reaches a fraction
``f`` of the mass is the rank at which the top-down cumulative mass crosses ``f``. Each pass bins
the log-weights ``u = l - log Z`` of the still-unresolved queries into ``bins`` equal bins of the
interval known to hold the crossing, starting from ``[u_max - log K - 40, u_max]`` (what lies
below holds < e^{-40} of the mass). The crossing bin becomes the next interval, so two passes
of 1024 bins shrink it to ~5e-5 in log-weight; a crossing bin holding one key resolves the
count exactly, and after the last pass the remaining keys are near-ties (weights equal within a
relative 5e-5), for which the count follows from their mean weight — exact but where several
keys' weights agree to 5e-5, in which case it may be off by one or two (ties).
"""
from __future__ import annotations

import math

import torch

from lemmse.estimators.accumulator import exp_floor

#: Exponents below this give subnormal float64 weights (slow to compute, too small to count).
EXP_FLOOR_64 = exp_floor(torch.float64)


class MassCounter:
    """Stream consumer (same ``update`` signature as the accumulator) counting top-mass keys."""

    def __init__(self, max_logit: torch.Tensor, log_z: torch.Tensor, n_keys: int,
                 fraction: float = 0.99, bins: int = 1024):
        self.log_z = log_z
        self.bins = bins
        self.fraction = fraction
        u_max = max_logit - log_z
        self.hi = u_max + 1e-9
        self.lo = u_max - (math.log(max(n_keys, 1)) + 40.0)
        q = log_z.shape[0]
        self.above_mass = torch.zeros(q, dtype=torch.float64, device=log_z.device)
        self.above_count = torch.zeros(q, dtype=torch.long, device=log_z.device)
        self.count = torch.full((q,), -1, dtype=torch.long, device=log_z.device)
        self.target: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return bool((self.count >= 0).all())

    def start_pass(self) -> None:
        q = self.log_z.shape[0]
        self.hist_count = torch.zeros(q * (self.bins + 2), dtype=torch.float64, device=self.log_z.device)
        self.hist_mass = torch.zeros_like(self.hist_count)

    def update(self, rows: slice | torch.Tensor, logits: torch.Tensor, values=None, *, first_owner: int = 0,
               group: int = 1, columns: torch.Tensor | None = None) -> None:
        """Histogram one tile of logits (consumed: ``logits`` is overwritten).

        Bin of ``u = l - log Z`` is ``floor((u - lo)/width) + 1`` clamped to ``[0, bins + 1]``
        (0 and ``bins + 1``: below / above the interval), offset by the query's histogram row.
        Computed in place in reused workspaces: this runs once per tile and pass.
        """
        u = logits.sub_(self.log_z[rows, None])
        q, k = u.shape
        inv_width = self.bins / (self.hi[rows] - self.lo[rows])
        position = self._buffer("position", (q, k), torch.float64, u.device)
        torch.mul(u, inv_width[:, None], out=position)
        position.sub_((self.lo[rows] * inv_width - 1.0)[:, None]).floor_().clamp_(0, self.bins + 1)
        row_ids = torch.arange(rows.start, rows.stop, device=u.device) if isinstance(rows, slice) else rows
        position.add_(row_ids.to(torch.float64)[:, None] * (self.bins + 2))
        flat = self._buffer("flat", (q * k,), torch.long, u.device)
        flat.copy_(position.view(-1))
        ones = self._buffer("ones", (q * k,), torch.float64, u.device, fill=1.0)
        self.hist_count.index_add_(0, flat, ones)
        self.hist_mass.index_add_(0, flat, u.clamp_(min=EXP_FLOOR_64).exp_().view(-1))

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device, fill: float | None = None):
        """A reused workspace of at least ``shape`` (a view of it), allocated once per size."""
        size = math.prod(shape)
        held = getattr(self, f"_ws_{name}", None)
        if held is None or held.numel() < size or held.device != torch.device(device):
            held = torch.empty(size, dtype=dtype, device=device)
            if fill is not None:
                held.fill_(fill)
            setattr(self, f"_ws_{name}", held)
        return held[:size].view(shape)

    def finish_pass(self, last: bool) -> None:
        q = self.log_z.shape[0]
        counts = self.hist_count.view(q, self.bins + 2)[:, 1:-1].flip(1)  # top bin first
        mass = self.hist_mass.view(q, self.bins + 2)[:, 1:-1].flip(1)
        if self.target is None:
            self.target = self.fraction * (mass.sum(dim=1) + self.hist_mass.view(q, -1)[:, 0])
        cum_mass = self.above_mass[:, None] + mass.cumsum(dim=1)
        crossed = cum_mass >= self.target[:, None]
        crossed[:, -1] = True  # numerical safety: the interval holds the crossing
        first = crossed.to(torch.int8).argmax(dim=1)
        take = first[:, None]
        c = counts.gather(1, take).squeeze(1)
        m = mass.gather(1, take).squeeze(1)
        mass_above = cum_mass.gather(1, take).squeeze(1) - m
        count_above = self.above_count + (counts.cumsum(dim=1).gather(1, take).squeeze(1) - c).long()
        open_ = self.count < 0
        single = open_ & (c <= 1)
        self.count = torch.where(single, count_above + 1, self.count)
        if last:
            need = torch.ceil((self.target - mass_above) / (m / c.clamp(min=1))).clamp(min=1)
            need = torch.minimum(need, c.clamp(min=1)).long()
            self.count = torch.where(open_ & ~single, count_above + need, self.count)
            return
        width = (self.hi - self.lo) / self.bins
        bin_lo = self.lo + (self.bins - 1 - first) * width
        still = open_ & ~single
        self.lo = torch.where(still, bin_lo, self.lo)
        self.hi = torch.where(still, bin_lo + width, self.hi)
        self.above_mass = torch.where(still, mass_above, self.above_mass)
        self.above_count = torch.where(still, count_above, self.above_count)
