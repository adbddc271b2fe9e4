r"""Seconds per estimate of the network and of the formula, from the workflow's benchmark files.

Snakemake writes one TSV per job (column ``s``: wall-clock seconds), where the results layout
(:mod:`lemmse.plan.layout`) puts it; the paths are read back through the same patterns.

* An analytic shard job ``benchmarks/analytic_shard/{ANALYTIC}/i{i}-s{j}.tsv`` runs one or several
  shards (``analytic.shards_per_job``), possibly of several stores; its marker
  ``analytic/{ANALYTIC}.shards/i{i}-s{j}.done`` lists each shard's store, measurement count
  ``n_k`` and own seconds ``t_k`` (:func:`lemmse.analytic.compute_shard_job`). The job's time ``s``
  (start-up included) is split in proportion to the shards' own seconds, so shard ``k`` costs

  .. math:: \frac{s\, t_k}{\sum_j t_j} \Big/ n_k \quad\text{seconds per estimate;}

* an evaluation job ``benchmarks/evaluate_network/{NETWORK}/{eval}.tsv`` runs the network on the
  whole grid (``n_eval × σ × 2``), model loading included.

Only plain LE-MMSE shards count as "the formula".
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from lemmse.errors import LemmseInputError
from lemmse.plan.layout import EVALUATION, SHARD, Layout, match

#: Numeric wildcards of the benchmark paths (the others match one path component).
NUMERIC = {name: r"\d+" for name in ("patch", "train_size", "image", "sigma_index")}
COLUMNS = ("dataset", "eval_dataset", "task", "preinverse", "arch", "patch", "train_size", "what",
           "seconds_per_estimate")


def _seconds(path: Path) -> float:
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def shard_job_records(marker: str | os.PathLike) -> list[dict]:
    """The per-shard records of a shard job's marker (refused, naming it, if it holds none)."""
    try:
        shards = json.loads(Path(marker).read_text())["shards"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LemmseInputError(f"{marker}: not a shard job marker with per-shard records ({err}); "
                               "rerun its analytic_shard job") from None
    if not shards:
        raise LemmseInputError(f"{marker}: a shard job marker without shards; rerun its analytic_shard job")
    return shards


def read_timings(results: str | os.PathLike, *, n_eval: int, n_sigma: int, lemmse_labels: set[str]) -> pd.DataFrame:
    """One row per plain LE-MMSE shard and per network evaluation with a benchmark file under the
    ``results`` folder: ``COLUMNS``. Empty when there is none."""
    layout = Layout(Path(results))
    bench = Path(layout.pattern("benchmarks"))
    rows = []
    store = layout.pattern("analytic_store")
    for path in sorted((bench / "analytic_shard").rglob("*.tsv")):
        w = match(layout.benchmark("analytic_shard", SHARD), path, NUMERIC)
        if w is None:
            continue
        shards = shard_job_records(layout.pattern("analytic_shard").format(**w))
        job_seconds, own = _seconds(path), sum(r["seconds"] for r in shards)
        for r in shards:
            s = match(store, r["store"], NUMERIC)
            if s is None or s["estimator"] not in lemmse_labels:
                continue
            share = r["seconds"] / own if own > 0 else 1 / len(shards)
            rows.append((s["dataset"], s["eval_dataset"], s["task"], s["preinverse"], "", int(s["patch"]),
                         int(s["train_size"]), "formula", job_seconds * share / r["measurements"]))
    for path in sorted((bench / "evaluate_network").rglob("*.tsv")):
        w = match(layout.benchmark("evaluate_network", EVALUATION), path, NUMERIC)
        if w is None:
            continue
        rows.append((w["dataset"], w["eval_dataset"], w["task"], w["preinverse"], w["arch"], int(w["patch"]),
                     int(w["train_size"]), "network", _seconds(path) / (2 * n_eval * n_sigma)))
    return pd.DataFrame(rows, columns=list(COLUMNS))
