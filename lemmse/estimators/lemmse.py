r"""The local-equivariant MMSE (LE-MMSE), cases 1 and 2 of MATH.md, with its diagnostics.

For every output pixel ``n'`` the estimate is a softmax-weighted average of the centre pixels of
all ``D·H·W`` training patches (only those of the query's stratum in case 2):

.. math:: \hat x_{n'}(y) = \sum_{d,n} (x_d)_n\, w_{n',(d,n)}, \qquad
          w_{n',(d,n)} \propto \mathcal N(Q_{n'} y;\ Q_n A x_d,\ σ^2 Q_n Q_nᵀ).

Queries are the patches of every measurement at once; training images stream through in blocks
and every stratum's accumulator is updated from the same block. Diagnostics come from the same
pass (densities, source map) plus, for the 99 %-mass count, a few refinement passes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from lemmse.errors import LemmseInputError
from lemmse.estimators.accumulator import StreamingSoftmax
from lemmse.estimators.api import EstimateResult, StreamOptions
from lemmse.estimators.features import PatchFeatures, Stratum
from lemmse.estimators.mass import MassCounter
from lemmse.estimators.stream import (KeyBlock, Queries, attend, augmented_queries, images_per_block,
                                      training_blocks, with_ones)
from lemmse.operators import InverseProblem
from lemmse.operators.linear_maps import CircularLinearMap

log = logging.getLogger(__name__)

MASS_FRACTION = 0.99
MASS_BINS = 1024
MASS_PASSES = 2


@dataclass
class QueryGroup:
    """The queries of one stratum within a chunk of measurements."""

    stratum: Stratum
    features: torch.Tensor  # (n·S, F) float64
    inv_var: torch.Tensor  # (n·S,) float64, 1/σ²
    augmented: Queries  # the same, prepared for attend (augmented rows, fp32 screen rows)


def lemmse(train: torch.Tensor, y: torch.Tensor, problem: InverseProblem, B: CircularLinearMap,
           patch: int, sigma: torch.Tensor, opts: StreamOptions, *, diagnostics: bool = False) -> EstimateResult:
    """LE-MMSE of every measurement in ``y`` (see module docstring); chunks ``y`` to fit ``max_memory``."""
    case = problem.le_mmse_case(B)
    if case == 3:
        if diagnostics:
            raise LemmseInputError("diagnostics need a convolution or mask pre-inverse (LE-MMSE case 1 or 2)")
        from lemmse.estimators.oracle import lemmse_general

        return EstimateResult(lemmse_general(train, y, problem, B, patch, sigma, dtype=opts.dtype))
    channels, h, w = y.shape[1:]
    features = PatchFeatures(B, patch, channels)
    feat_dim = max(s.rank for s in features.strata) + 1
    per_image = h * w * (16 * feat_dim + 8 * (channels + 4))
    if diagnostics:
        per_image += h * w * 16 * (MASS_BINS + 2)
    chunk = max(1, opts.max_memory // (2 * per_image))
    log.info("LE-MMSE case %d, P=%d, %d strata, %d measurements in chunks of %d",
             case, patch, len(features.strata), y.shape[0], chunk)
    parts = [_lemmse_chunk(train, y[i : i + chunk], problem, B, features, sigma[i : i + chunk], opts, diagnostics)
             for i in range(0, y.shape[0], chunk)]
    xhat = torch.cat([p.xhat.cpu() for p in parts])
    diag = {k: torch.cat([p.diagnostics[k] for p in parts]) for k in parts[0].diagnostics}
    return EstimateResult(xhat, diag)


def _lemmse_chunk(train, y, problem, B, features: PatchFeatures, sigma, opts: StreamOptions,
                  diagnostics: bool) -> EstimateResult:
    n, channels, h, w = y.shape
    dev, dtype = opts.device, opts.dtype
    y64 = y.to(device=dev, dtype=torch.float64)
    inv_var = (1.0 / sigma.to(dev) ** 2)
    transformed = features.transform(B(y64))
    groups = []
    for stratum in features.strata:
        q = features.select(transformed, stratum)
        iv = inv_var.repeat_interleave(len(stratum.positions))
        groups.append(QueryGroup(stratum, q, iv, augmented_queries(q, iv)))
    accs = [StreamingSoftmax(g.features.shape[0], channels, device=dev, dtype=dtype, track_owner=diagnostics)
            for g in groups]
    image_acc = image_queries = None
    if diagnostics:
        image_queries = augmented_queries(y64.reshape(n, -1), inv_var)
        image_acc = StreamingSoftmax(n, 0, device=dev, dtype=torch.float64)
    _stream(train, problem, B, features, groups, accs, opts, image_queries, image_acc, desc="LE-MMSE")

    xhat = torch.empty(n, h * w, channels, dtype=dtype, device=dev)
    for g, acc in zip(groups, accs):
        xhat[:, g.stratum.positions] = acc.mean().reshape(n, -1, channels)
    xhat = xhat.transpose(1, 2).reshape(n, channels, h, w)
    if not diagnostics:
        return EstimateResult(xhat)

    n_keys = train.shape[0] * h * w
    density = torch.empty(n, h * w, dtype=torch.float64, device=dev)
    source = torch.empty(n, h * w, dtype=torch.long, device=dev)
    for g, acc in zip(groups, accs):
        rank, var = g.stratum.rank, 1.0 / g.inv_var
        logp = (acc.log_normaliser() - 0.5 * (g.features**2).sum(dim=1) * g.inv_var - math.log(n_keys)
                - 0.5 * rank * torch.log(2 * math.pi * var) - 0.5 * g.stratum.log_pdet)
        density[:, g.stratum.positions] = logp.reshape(n, -1)
        source[:, g.stratum.positions] = acc.owner(0.5).reshape(n, -1)
    mass = _mass_counts(train, problem, B, features, groups, accs, opts)
    n_pix = channels * h * w
    image_density = (image_acc.log_normaliser() - 0.5 * (y64.reshape(n, -1) ** 2).sum(dim=1) * inv_var
                     - math.log(train.shape[0]) - 0.5 * n_pix * torch.log(2 * math.pi / inv_var))
    diag = {
        "patch_log_density": density.reshape(n, h, w).cpu(),
        "image_log_density": image_density.cpu(),
        "mass99": mass.reshape(n, h, w).cpu(),
        "source": source.reshape(n, h, w).cpu(),
    }
    return EstimateResult(xhat, diag)


def _stream(train, problem, B, features: PatchFeatures, groups, consumers, opts: StreamOptions,
            image_queries=None, image_consumer=None, desc: str = "LE-MMSE") -> None:
    """One pass over the training set, feeding every group's consumer from each block."""
    channels, h, w = train.shape[1:]
    per_block = images_per_block(h * w, opts.key_block)
    for start, x in training_blocks(train, per_block, opts.device, opts.progress, desc):
        ax = problem.A(x)
        transformed = features.transform(B(ax))
        centres = x.reshape(x.shape[0], channels, h * w).transpose(1, 2)  # (b, H·W, C)
        for g, consumer in zip(groups, consumers):
            if consumer is None:
                continue
            pos = g.stratum.positions
            values = with_ones(centres[:, pos].reshape(-1, channels), opts.dtype)
            keys = KeyBlock(features.select(transformed, g.stratum), values, start, len(pos))
            attend(g.augmented, keys, consumer, opts.query_block)
        if image_consumer is not None:
            ones = torch.ones(x.shape[0], 1, dtype=torch.float64, device=x.device)
            attend(image_queries, KeyBlock(ax.reshape(x.shape[0], -1), ones, start, 1),
                   image_consumer, opts.query_block)


def _mass_counts(train, problem, B, features, groups, accs, opts) -> torch.Tensor:
    """99 %-mass counts per query via :class:`MassCounter` refinement passes."""
    n_keys_per_image = {id(g): len(g.stratum.positions) for g in groups}
    counters = [MassCounter(acc.max, acc.log_normaliser(), train.shape[0] * n_keys_per_image[id(g)],
                            MASS_FRACTION, MASS_BINS) for g, acc in zip(groups, accs)]
    for level in range(MASS_PASSES):
        active = [c if not c.done else None for c in counters]
        if all(c is None for c in active):
            break
        for c in active:
            if c is not None:
                c.start_pass()
        _stream(train, problem, B, features, groups, active, opts, desc=f"mass pass {level + 1}")
        for c in active:
            if c is not None:
                c.finish_pass(last=level == MASS_PASSES - 1)
    n = next(iter(groups)).features.shape[0] // len(groups[0].stratum.positions)
    h_w = sum(len(g.stratum.positions) for g in groups)
    out = torch.empty(n, h_w, dtype=torch.long, device=opts.device)
    for g, c in zip(groups, counters):
        out[:, g.stratum.positions] = c.count.reshape(n, -1)
    return out
