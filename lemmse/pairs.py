r"""PSNR between two outputs on the same measurements: network against network, and one estimator
with two pre-inverses.

* :func:`network_pairs` — for every two architectures trained on the same data set, task,
  pre-inverse, P, N and training noise and evaluated on the same data set: ``PSNR(net_a(y), net_b(y))`` per
  (split, image, σ). The paper's "different architectures consistently yield a similar output"
  (§4.2) is a statement about these numbers, not about each network against the formula.
* :func:`preinverse_pairs` — for every estimator store (same data, task, estimator, P, N) under two
  pre-inverse labels: ``PSNR(x̂_{B_a}(y), x̂_{B_b}(y))`` (Cor. 3.7: the E-MMSE with B = I and
  B = A⁺ coincide when A is an invertible circular convolution).

PSNR as in :func:`lemmse.metrics.psnr` (peak 1); identical outputs give ``inf``.
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lemmse.errors import LemmseInputError

log = logging.getLogger(__name__)

NETWORK_COLUMNS = ("dataset", "eval_dataset", "task", "preinverse", "patch", "train_size", "train_sigma", "arch_a",
                   "arch_b", "sigma", "split", "image", "psnr")
PREINVERSE_COLUMNS = ("dataset", "eval_dataset", "task", "estimator", "patch", "train_size", "preinverse_a",
                      "preinverse_b", "sigma", "split", "image", "psnr")


def pair_psnr(path_a: Path, path_b: Path) -> pd.DataFrame:
    """``split, image, sigma, psnr`` between the ``xhat`` of two stores on one measurement grid."""
    from lemmse import store as zstore
    from lemmse.metrics import psnr

    a, b = zstore.open_dataset(path_a), zstore.open_dataset(path_b)
    for dim in ("split", "image", "sigma"):
        if not np.array_equal(a[dim].values, b[dim].values):
            raise LemmseInputError(f"{path_a} and {path_b} differ on {dim}: not the same measurements")
    order = ("split", "image", "sigma", "c", "h", "w")
    value = psnr(a["xhat"].transpose(*order).values, b["xhat"].transpose(*order).values)
    s, i, g = np.meshgrid(np.arange(a.sizes["split"]), np.arange(a.sizes["image"]), np.arange(a.sizes["sigma"]),
                          indexing="ij")
    return pd.DataFrame({"sigma": a["sigma"].values[g.ravel()].astype(np.float64),
                         "split": np.asarray([str(v) for v in a["split"].values])[s.ravel()],
                         "image": a["image"].values[i.ravel()].astype(np.int64), "psnr": value.ravel()})


def network_pairs(plan) -> pd.DataFrame:
    """Net-vs-net PSNR for every pair of architectures of ``plan`` on the same measurements."""
    groups: dict[tuple, list] = {}
    for e in plan.evaluations:
        r = e.run
        key = (r.dataset, e.eval_dataset, r.task, r.preinverse, r.patch, r.train_size, r.spec)
        groups.setdefault(key, []).append(e)
    frames = []
    for (dataset, ev, task, pre, patch, n, spec), evals in groups.items():
        for ea, eb in itertools.combinations(sorted(evals, key=lambda e: e.run.arch), 2):
            frame = pair_psnr(ea.store(plan.results), eb.store(plan.results))
            frames.append(frame.assign(dataset=dataset, eval_dataset=ev, task=task, preinverse=pre, patch=patch,
                                       train_size=n, train_sigma=spec, arch_a=ea.run.arch, arch_b=eb.run.arch))
    log.info("net-vs-net: %d pairs", len(frames))
    return pd.concat(frames, ignore_index=True)[list(NETWORK_COLUMNS)] if frames else \
        pd.DataFrame(columns=list(NETWORK_COLUMNS))


def preinverse_pairs(plan) -> pd.DataFrame:
    """Estimator-vs-estimator PSNR for every two pre-inverses of the same estimator store of ``plan``."""
    groups: dict[tuple, list] = {}
    for a in plan.analytics:
        groups.setdefault((a.dataset, a.eval_dataset, a.task, a.estimator, a.patch, a.train_size), []).append(a)
    frames = []
    for (dataset, ev, task, label, patch, n), runs in groups.items():
        for ra, rb in itertools.combinations(sorted(runs, key=lambda r: r.preinverse), 2):
            frame = pair_psnr(ra.store(plan.results), rb.store(plan.results))
            frames.append(frame.assign(dataset=dataset, eval_dataset=ev, task=task, estimator=plan.kind(ra),
                                       patch=patch, train_size=n, preinverse_a=ra.preinverse,
                                       preinverse_b=rb.preinverse))
    log.info("pre-inverse pairs: %d", len(frames))
    return pd.concat(frames, ignore_index=True)[list(PREINVERSE_COLUMNS)] if frames else \
        pd.DataFrame(columns=list(PREINVERSE_COLUMNS))


def write_pair_tables(plan, out_networks: str | Path, out_preinverses: str | Path) -> None:
    """Both pair tables as Parquet, each written atomically."""
    for frame, out in ((network_pairs(plan), Path(out_networks)), (preinverse_pairs(plan), Path(out_preinverses))):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(out)
