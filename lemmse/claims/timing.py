r"""Seconds per estimate of the network and of the formula, from the workflow's benchmark files.

Snakemake writes one TSV per job (column ``s``: wall-clock seconds), where the results layout
(:mod:`lemmse.plan.layout`) puts it; the paths are read back through the same patterns. An analytic shard job
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

from lemmse.plan.layout import EVALUATION, SHARD, benchmark_file, match

#: Numeric wildcards of the benchmark paths (the others match one path component).
NUMERIC = {name: r"\d+" for name in ("patch", "train_size", "image", "sigma_index")}
COLUMNS = ("dataset", "eval_dataset", "task", "preinverse", "arch", "patch", "train_size", "what",
           "seconds_per_estimate")


def _seconds(path: Path) -> float:
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def read_timings(bench: str | os.PathLike, *, n_eval: int, n_sigma: int, images_per_shard: int,
                 sigmas_per_shard: int, lemmse_labels: set[str]) -> pd.DataFrame:
    """One row per benchmark file found: ``COLUMNS``. Empty when there is none."""
    bench = Path(bench)
    rows = []
    shard = benchmark_file(bench, "analytic_shard", SHARD)
    for path in sorted((bench / "analytic_shard").rglob("*.tsv")):
        w = match(shard, path, NUMERIC)
        if w is None or w["estimator"] not in lemmse_labels:
            continue
        i, s = int(w["image"]), int(w["sigma_index"])
        count = 2 * (min(i + images_per_shard, n_eval) - i) * (min(s + sigmas_per_shard, n_sigma) - s)
        rows.append((w["dataset"], w["eval_dataset"], w["task"], w["preinverse"], "", int(w["patch"]),
                     int(w["train_size"]), "formula", _seconds(path) / count))
    evaluation = benchmark_file(bench, "evaluate_network", EVALUATION)
    for path in sorted((bench / "evaluate_network").rglob("*.tsv")):
        w = match(evaluation, path, NUMERIC)
        if w is None:
            continue
        rows.append((w["dataset"], w["eval_dataset"], w["task"], w["preinverse"], w["arch"], int(w["patch"]),
                     int(w["train_size"]), "network", _seconds(path) / (2 * n_eval * n_sigma)))
    return pd.DataFrame(rows, columns=list(COLUMNS))
