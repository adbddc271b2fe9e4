r"""THE results layout: every path the workflow writes, spelled once.

Each entry of :data:`PATHS` is a pattern relative to the results folder, with Snakemake wildcards
(``{dataset}``, ``{task}``, …). :class:`Layout` puts it under a results folder and gives

* :meth:`Layout.pattern` — the wildcard pattern a rule file declares (``input:``/``output:``);
* :meth:`Layout.path` — the concrete path of a job record (its :attr:`wildcards`), used by the
  plan, the input functions, gather, pairs, memorisation and the figures.

Both are the same string formatted or not, so a rule's output and the path a reader opens cannot
disagree (``tests/test_layout.py`` checks the round trip for every record of the shipped configs).
Logs and benchmarks hang off the same job keys (:data:`NETWORK`, :data:`ANALYTIC`, …):
:meth:`Layout.log` and :meth:`Layout.benchmark`.

Layout (``results/`` by default, ``config["results"]``)::

    data/{dataset}.zarr                                        prepared data set
    measurements/{dataset}/{task}.zarr                         y (split, image, sigma, c, h, w)
    models/{NETWORK}/trained.json                              a trained network (model.pt beside)
    networks/{NETWORK}/{eval_dataset}.zarr                     its outputs on eval_dataset's y
    analytic/{ANALYTIC}.template|.zarr|.complete               an estimator store, its markers
    analytic/{ANALYTIC}.shards/i{image}-s{sigma_index}.done    a shard job's marker, named after its first shard
    variance/{dataset}/{task}.zarr                             the fig4 noise-draw store
    tables/{table}, tables/studies/{study}.parquet|.zarr       gathered tables, a study's cube
    figures/{figure}.png, figures/coverage.md, claims.md|csv   the report
    logs/{rule}/{job}.log, benchmarks/{rule}/{job}.tsv         per job

with ``NETWORK = {dataset}/{task}/{preinverse}/{arch}/P{patch}/N{train_size}/sigma{spec}`` and
``ANALYTIC = {dataset}/{task}/{preinverse}/{estimator}/P{patch}/N{train_size}/{eval_dataset}``
(``estimator`` and ``preinverse`` are config labels; ``spec`` the training σ spec).
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

# -- job keys: the wildcard part naming one job; its stores, logs and benchmarks hang off it -----------
DATASET = "{dataset}"
MEASUREMENT = "{dataset}/{task}"
NETWORK = "{dataset}/{task}/{preinverse}/{arch}/P{patch}/N{train_size}/sigma{spec}"
EVALUATION = NETWORK + "/{eval_dataset}"
ANALYTIC = "{dataset}/{task}/{preinverse}/{estimator}/P{patch}/N{train_size}/{eval_dataset}"
SHARD = ANALYTIC + "/i{image}-s{sigma_index}"
VARIANCE = "{dataset}/{task}"
STUDY = "{study}"

#: Every path the workflow writes, relative to the results folder.
PATHS: dict[str, str] = {
    "data": f"data/{DATASET}.zarr",
    "measurements": f"measurements/{MEASUREMENT}.zarr",
    "network_dir": f"models/{NETWORK}",
    "trained": f"models/{NETWORK}/trained.json",
    "evaluation": f"networks/{EVALUATION}.zarr",
    "analytic_stem": f"analytic/{ANALYTIC}",
    "analytic_template": f"analytic/{ANALYTIC}.template",
    "analytic_store": f"analytic/{ANALYTIC}.zarr",
    "analytic_shard": f"analytic/{ANALYTIC}.shards/i{{image}}-s{{sigma_index}}.done",
    "analytic_complete": f"analytic/{ANALYTIC}.complete",
    "variance": f"variance/{VARIANCE}.zarr",
    "table": "tables/{table}",
    "study_table": f"tables/studies/{STUDY}.parquet",
    "study_cube": f"tables/studies/{STUDY}.zarr",
    "figure": "figures/{figure}.png",
    "coverage": "figures/coverage.md",
    "claims_md": "claims.md",
    "claims_csv": "claims.csv",
    "logs": "logs",
    "benchmarks": "benchmarks",
}

#: The gathered tables (``tables/{table}``) the gather rule writes, besides the metrics cube.
GATHERED = ("metrics.parquet", "metrics.csv", "analytic.parquet", "analytic.csv")


def wildcard_names(pattern: str) -> list[str]:
    """The wildcards of ``pattern``, in order of first appearance."""
    names = [field for _, field, _, _ in string.Formatter().parse(pattern) if field]
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Layout:
    """The layout of :data:`PATHS` under one results folder (a string, as Snakemake wants it)."""

    results: str

    def __init__(self, results: str | Path) -> None:
        object.__setattr__(self, "results", str(results).rstrip("/") or ".")

    # -- patterns (rule files) ---------------------------------------------------------------------------
    def pattern(self, name: str) -> str:
        """The Snakemake pattern of path ``name`` (a key of :data:`PATHS`), wildcards unfilled."""
        try:
            return f"{self.results}/{PATHS[name]}"
        except KeyError:
            raise KeyError(f"no path {name!r} in the layout (known: {', '.join(PATHS)})") from None

    def log(self, rule: str, job: str | None = None) -> str:
        """``logs/{rule}/{job}.log`` (``logs/{rule}.log`` for a one-job rule); ``job`` a job key."""
        return f"{self.pattern('logs')}/{rule}/{job}.log" if job else f"{self.pattern('logs')}/{rule}.log"

    def benchmark(self, rule: str, job: str | None = None) -> str:
        """``benchmarks/{rule}/{job}.tsv`` (``benchmarks/{rule}.tsv`` for a one-job rule)."""
        return benchmark_file(self.pattern("benchmarks"), rule, job)

    # -- concrete paths (records) ------------------------------------------------------------------------
    def path(self, name: str, record: Any = None, **wildcards: Any) -> Path:
        """The concrete path ``name`` of ``record`` (its :attr:`wildcards`), updated by ``wildcards``."""
        values = dict(record.wildcards) if record is not None else {}
        values.update(wildcards)
        pattern = self.pattern(name)
        missing = [w for w in wildcard_names(pattern) if w not in values]
        if missing:
            raise KeyError(f"path {name!r} needs the wildcards {', '.join(missing)}")
        return Path(pattern.format(**values))

    # named shorthands for the paths read outside the rule files
    def data(self, dataset: str) -> Path:
        return self.path("data", dataset=dataset)

    def measurements(self, dataset: str, task: str) -> Path:
        return self.path("measurements", dataset=dataset, task=task)

    def variance(self, dataset: str, task: str) -> Path:
        return self.path("variance", dataset=dataset, task=task)

    def table(self, table: str) -> Path:
        return self.path("table", table=table)


def benchmark_file(folder: str | Path, rule: str, job: str | None = None) -> str:
    """The benchmark file pattern of ``rule``'s job ``job`` under a benchmarks ``folder``."""
    return f"{folder}/{rule}/{job}.tsv" if job else f"{folder}/{rule}.tsv"


def _choice(values: Iterable[Any]) -> str:
    return "|".join(re.escape(str(v)) for v in sorted({str(v) for v in values})) or "(?!)"


def wildcard_constraints(plan) -> dict[str, str]:
    """Regex of every wildcard of :data:`PATHS`: only the values the plan (``lemmse.plan.sweep.Plan``) holds.

    The Snakefile's ``wildcard_constraints:``; a pattern can thus only match a configured job.
    """
    return {
        "dataset": _choice(plan.datasets),
        "eval_dataset": _choice(plan.datasets),
        "task": _choice(plan.config["tasks"]),
        "preinverse": _choice(plan.preinverses),
        "arch": _choice(r.arch for r in plan.networks),
        "estimator": _choice(plan.estimators),
        "spec": _choice(r.spec for r in plan.networks),
        "patch": r"\d+",
        "train_size": r"\d+",
        "image": r"\d+",
        "sigma_index": r"\d+",
        "study": _choice(plan.config["studies"]),
    }


def match(pattern: str, path: str | Path, constraints: Mapping[str, str]) -> dict[str, str] | None:
    """The wildcards of ``path`` read back through ``pattern`` (Snakemake's matching), else ``None``.

    A wildcard without a constraint matches within one path component."""
    regex, seen = [], set()
    for literal, field, _, _ in string.Formatter().parse(pattern):
        regex.append(re.escape(literal))
        if field:
            regex.append(f"(?P={field})" if field in seen else f"(?P<{field}>{constraints.get(field, '[^/]+')})")
            seen.add(field)
    found = re.fullmatch("".join(regex), str(path))
    return found.groupdict() if found else None
