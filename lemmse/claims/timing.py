r"""Seconds per estimate of the network and of the formula, from the workflow's benchmark files.

Snakemake writes one TSV per job (column ``s``: wall-clock seconds). An analytic shard job
``benchmarks/analytic_shard/{dataset}/{task}/{preinverse}/{estimator}/P{P}/N{N}/{eval}/i{i}-s{j}.tsv``
estimates ``images × σ × 2 splits`` measurements; an evaluation job
``benchmarks/evaluate_network/{dataset}/{task}/{preinverse}/{arch}/P{P}/N{N}/sigma{spec}/{eval}.tsv``
runs the network on the whole grid (``n_eval × σ × 2``), model loading included. Only plain
LE-MMSE shards count as "the formula".
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

COLUMNS = ("dataset", "eval_dataset", "task", "preinverse", "arch", "patch", "train_size", "what",
           "seconds_per_estimate")


def _seconds(path: Path) -> float:
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def read_timings(bench: str | os.PathLike, *, n_eval: int, n_sigma: int, images_per_shard: int,
                 sigmas_per_shard: int, lemmse_labels: set[str]) -> pd.DataFrame:
    """One row per benchmark file found: ``COLUMNS``. Empty when there is none."""
    bench = Path(bench)
    rows = []
    for path in sorted((bench / "analytic_shard").glob("*/*/*/*/P*/N*/*/i*-s*.tsv")):
        dataset, task, pre, est, p, n, ev = path.relative_to(bench / "analytic_shard").parts[:7]
        if est not in lemmse_labels:
            continue
        i, s = (int(v[1:]) for v in path.stem.split("-"))
        count = 2 * (min(i + images_per_shard, n_eval) - i) * (min(s + sigmas_per_shard, n_sigma) - s)
        rows.append((dataset, ev, task, pre, "", int(p[1:]), int(n[1:]), "formula", _seconds(path) / count))
    for path in sorted((bench / "evaluate_network").glob("*/*/*/*/P*/N*/sigma*/*.tsv")):
        dataset, task, pre, arch, p, n, _spec = path.relative_to(bench / "evaluate_network").parts[:7]
        rows.append((dataset, path.stem, task, pre, arch, int(p[1:]), int(n[1:]), "network",
                     _seconds(path) / (2 * n_eval * n_sigma)))
    return pd.DataFrame(rows, columns=list(COLUMNS))
