r"""The local-equivariant MMSE (LE-MMSE), cases 1 and 2 of MATH.md, with its diagnostics.

For every output pixel ``n'`` the estimate is a softmax-weighted average of the centre pixels of
all ``D·H·W`` training patches (only those of the query's stratum in case 2):

.. math:: \hat x_{n'}(y) = \sum_{d,n} (x_d)_n\, w_{n',(d,n)}, \qquad
          w_{n',(d,n)} \propto \mathcal N(Q_{n'} y;\ Q_n A x_d,\ σ^2 Q_n Q_nᵀ).

Queries are the patches of every measurement at once; training images stream through in blocks
and every stratum's accumulator is updated from the same block.

Diagnostics (MATH.md "Diagnostics"; names in :data:`~lemmse.estimators.api.DIAGNOSTICS`). All come
from the estimate pass itself: the densities from its normaliser, the source maps from owners
tracked by its accumulator, the 99 %-mass count from a histogram it fills tile by tile
(:class:`~lemmse.estimators.mass.MassHistogram`); no second pass. With ``l`` the logits
``-½‖q - k‖²_{Σ⁺}/σ²`` of a query's stratum:

* ``patch_log_density_paper`` ``s_{n'} = log Σ_{d,n} e^{l}`` — the paper's convention (no
  Gaussian constants, no ``1/(D·H·W)``); a rank-0 query gets ``log(D·S₀)``;
* ``patch_log_density`` ``= s_{n'} - log(D·H·W) - (r/2) log(2πσ²) - ½ log|Σ|₊``, the normalised
  patch density (rank ``r`` and pseudo-determinant of the query's stratum);
* ``image_log_density_paper`` ``log Σ_d e^{-‖y - Ax_d‖²/2σ²}`` and ``image_log_density``
  ``= that - log D - (CHW/2) log(2πσ²)``;
* ``mass99`` per pixel; ``mass99_observed_mean`` / ``mass99_observed_median`` its mean and
  median over the *observed* pixels (stratum rank > 0; every pixel when no stratum has rank 0;
  NaN if none is observed): at rank-0 pixels the count is ``⌈0.99·D·S₀⌉`` by construction;
* ``source`` the training image owning a single key (patch) with ≥ 50 % of the weight, else -1
  (paper §D.5); ``source_image`` the image whose keys together hold ≥ 50 %, else -1.
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
from lemmse.estimators.mass import MassHistogram, histogram_columns
from lemmse.estimators.stream import (KeyBlock, Queries, attend, augmented_queries, images_per_block,
                                      training_blocks, with_ones)
from lemmse.operators import InverseProblem
from lemmse.operators.linear_maps import CircularLinearMap

#: Passes over the training set the diagnostics add to the estimate's one: none (the 99 %-mass
#: histogram, densities and source maps all come from the estimate's own pass). Read by lemmse.cost.
MASS_PASSES = 0

log = logging.getLogger(__name__)

MASS_FRACTION = 0.99


@dataclass
class QueryGroup:
    """The queries of one stratum within a chunk of measurements."""

    stratum: Stratum
    features: torch.Tensor  # (n·S, F) float64
    inv_var: torch.Tensor  # (n·S,) float64, 1/σ²
    augmented: Queries  # the same, prepared for attend (augmented rows, fp32 screen rows)


def lemmse(train: torch.Tensor, y: torch.Tensor, problem: InverseProblem, B: CircularLinearMap,
           patch: int, sigma: torch.Tensor, opts: StreamOptions, *, diagnostics: bool = False,
           mass: bool = True) -> EstimateResult:
    """LE-MMSE of every measurement in ``y`` (see module docstring); chunks ``y`` to fit ``max_memory``.

    ``mass=False`` (with ``diagnostics``): every diagnostic but the 99 %-mass ones, without their pass."""
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
    if diagnostics and mass:  # int32 counts and 8-byte masses of every query's histogram
        per_image += h * w * 12 * histogram_columns(train.shape[0] * h * w)
    chunk = max(1, opts.max_memory // (2 * per_image))
    log.info("LE-MMSE case %d, P=%d, %d strata, %d measurements in chunks of %d",
             case, patch, len(features.strata), y.shape[0], chunk)
    parts = [_lemmse_chunk(train, y[i : i + chunk], problem, B, features, sigma[i : i + chunk], opts, diagnostics,
                           mass) for i in range(0, y.shape[0], chunk)]
    xhat = torch.cat([p.xhat.cpu() for p in parts])
    diag = {k: torch.cat([p.diagnostics[k] for p in parts]) for k in parts[0].diagnostics}
    return EstimateResult(xhat, diag)


def _lemmse_chunk(train, y, problem, B, features: PatchFeatures, sigma, opts: StreamOptions,
                  diagnostics: bool, mass: bool = True) -> EstimateResult:
    n, channels, h, w = y.shape
    dev, dtype = opts.device, opts.dtype
    y64 = y.to(device=dev, dtype=torch.float64)
    inv_var = (1.0 / sigma.to(dev) ** 2)
    transformed = features.transform(B(y64))
    groups = []
    for stratum in features.strata:
        q = features.select(transformed, stratum)
        iv = inv_var.repeat_interleave(len(stratum.positions))
        groups.append(QueryGroup(stratum, q, iv, augmented_queries(q, iv, n_keys=train.shape[0] * len(stratum.positions))))
    accs = [StreamingSoftmax(g.features.shape[0], channels, device=dev, dtype=dtype, track_owner=diagnostics,
                             order=g.augmented.order,
                             mass=MassHistogram(g.features.shape[0], train.shape[0] * len(g.stratum.positions),
                                                fraction=MASS_FRACTION, dtype=dtype, device=dev)
                             if diagnostics and mass else None)
            for g in groups]
    image_acc = image_queries = None
    if diagnostics:
        image_queries = augmented_queries(y64.reshape(n, -1), inv_var, n_keys=train.shape[0])
        image_acc = StreamingSoftmax(n, 0, device=dev, dtype=torch.float64, order=image_queries.order)
    _stream(train, problem, B, features, groups, accs, opts, image_queries, image_acc, desc="LE-MMSE")

    xhat = torch.empty(n, h * w, channels, dtype=dtype, device=dev)
    for g, acc in zip(groups, accs):
        xhat[:, g.stratum.positions] = acc.mean().reshape(n, -1, channels)
    xhat = xhat.transpose(1, 2).reshape(n, channels, h, w)
    if not diagnostics:
        return EstimateResult(xhat)

    n_keys = train.shape[0] * h * w
    grid = (n, h * w)
    paper = torch.empty(grid, dtype=torch.float64, device=dev)
    density = torch.empty(grid, dtype=torch.float64, device=dev)
    source = torch.empty(grid, dtype=torch.long, device=dev)
    source_image = torch.empty(grid, dtype=torch.long, device=dev)
    observed = torch.zeros(h * w, dtype=torch.bool, device=dev)
    for g, acc in zip(groups, accs):
        pos = g.stratum.positions
        s = acc.log_normaliser() - 0.5 * (g.features**2).sum(dim=1) * g.inv_var
        logp = (s - math.log(n_keys) - 0.5 * g.stratum.rank * torch.log(2 * math.pi / g.inv_var)
                - 0.5 * g.stratum.log_pdet)
        paper[:, pos] = s.reshape(n, -1)
        density[:, pos] = logp.reshape(n, -1)
        source[:, pos] = acc.key_owner(0.5).reshape(n, -1)
        source_image[:, pos] = acc.image_owner(0.5).reshape(n, -1)
        observed[pos] = g.stratum.rank > 0
    image_paper = image_acc.log_normaliser() - 0.5 * (y64.reshape(n, -1) ** 2).sum(dim=1) * inv_var
    n_pix = channels * h * w
    image_density = image_paper - math.log(train.shape[0]) - 0.5 * n_pix * torch.log(2 * math.pi / inv_var)
    maps = {"patch_log_density_paper": paper, "patch_log_density": density, "source": source,
            "source_image": source_image}
    diag = {name: value.reshape(n, h, w).cpu() for name, value in maps.items()}
    diag.update({"image_log_density_paper": image_paper.cpu(), "image_log_density": image_density.cpu()})
    if mass:
        counts = torch.empty(grid, dtype=torch.long, device=dev)
        for g, acc in zip(groups, accs):
            counts[:, g.stratum.positions] = acc.mass_bounds()[1].reshape(n, -1)
        kept = counts[:, observed].to(torch.float64)
        if kept.shape[1]:
            mass_mean, mass_median = kept.mean(dim=1), kept.quantile(0.5, dim=1)
        else:
            mass_mean = mass_median = torch.full((n,), math.nan, dtype=torch.float64, device=dev)
        diag.update({"mass99": counts.reshape(n, h, w).cpu(), "mass99_observed_mean": mass_mean.cpu(),
                     "mass99_observed_median": mass_median.cpu()})
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
            pos = g.stratum.positions
            values = with_ones(centres[:, pos].reshape(-1, channels), opts.dtype)
            keys = KeyBlock(features.select(transformed, g.stratum), values, start, len(pos))
            attend(g.augmented, keys, consumer, opts.query_block)
        if image_consumer is not None:
            ones = torch.ones(x.shape[0], 1, dtype=torch.float64, device=x.device)
            attend(image_queries, KeyBlock(ax.reshape(x.shape[0], -1), ones, start, 1),
                   image_consumer, opts.query_block)
