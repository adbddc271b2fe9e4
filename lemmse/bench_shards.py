r"""``lemmse bench-shards``: the workflow's estimator shard jobs against the engine, on the same problems.

For every shard job of a finished run that left a Snakemake benchmark file
(``benchmarks/analytic_shard/...tsv``, named after the job's first shard; a job runs
``analytic.shards_per_job`` shards), this re-runs, in this one process, exactly the engine calls of
its shards (:func:`lemmse.analytic.shard_estimates`: same measurements, training images, options
and diagnostics; nothing is written) and reports

.. math:: \text{rate fraction} = \frac{t_\text{engine}}{t_\text{shard jobs}}

on two clocks: elapsed seconds (the benchmark files' ``s``; a job also pays for its interpreter's
start-up, reading the stores and writing its chunks, and, in a busy workflow, for the other jobs
beside it) and CPU seconds of all threads (insensitive to neighbours) of the job's shards, as the
job itself recorded them in its marker (:func:`lemmse.analytic.compute_shard_job`: from the first
shard's start to the last one's end, so start-up excluded). Not the benchmark files' ``cpu_time``:
Snakemake samples it every 0.5 s for a job's first 15 s and every 30 s after, so it misses up to
the last 30 s of CPU (a 45-s shard job recorded 25 of its ~80 CPU-s). 100 % means a shard job costs
no more than the bare engine; the target is ≥ 80 % in elapsed seconds. Run it on a quiet machine
with ``--threads`` equal to the shard rule's threads (2 in the shipped profile).

No number from another machine or run enters: both times are this run's results folder and
this process.
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lemmse.errors import LemmseInputError

log = logging.getLogger("lemmse.bench_shards")

DESCRIPTION = __doc__.split("\n\n", 1)[0].replace("``", "") + """

Prints a Markdown table, a row per shard job, and the total (--csv writes the rows). Example, after the default run:
  lemmse bench-shards config/config.yaml --threads 2
"""


@dataclass(frozen=True)
class ShardRateRow:
    job: str  # the job's first shard: its store and block (the benchmark file's name)
    stores: int
    shards: int
    measurements: int
    diagnostics: str  # stores per diagnostics kind: "all" (with the 99 %-mass pass), "no mass" or "none"
    job_seconds: float  # the job's elapsed seconds (its Snakemake benchmark file)
    job_cpu_seconds: float  # CPU seconds of its shards, all threads (its marker)
    engine_seconds: float
    engine_cpu_seconds: float

    @property
    def rate_fraction(self) -> float:
        return self.engine_seconds / self.job_seconds

    @property
    def cpu_rate_fraction(self) -> float:
        return self.engine_cpu_seconds / self.job_cpu_seconds


def _read_benchmark(path: Path) -> float:
    import pandas as pd

    frame = pd.read_csv(path, sep="\t")
    if frame.empty or "s" not in frame.columns:
        raise LemmseInputError(f"{path}: not a Snakemake benchmark file (column s)")
    return float(frame["s"].iloc[0])


def _diagnostics_kind(store) -> str:
    from lemmse.analytic import has_diagnostics, has_mass

    return "all" if has_mass(store) else "no mass" if has_diagnostics(store) else "none"


def measure(config: str | Path, *, device: str = "cpu", jobs: int | None = None) -> list[ShardRateRow]:
    """One row per shard job of ``config``'s results that left a benchmark file and whose stores are complete."""
    from collections import Counter

    from lemmse.data import load_split
    from lemmse.plan import layout as paths
    from lemmse.plan.config import load_config
    from lemmse.plan.sweep import estimate_options, make_plan
    from lemmse import store as zstore
    from lemmse.analytic import ShardReads, shard_estimates
    from lemmse.claims.timing import shard_job_records

    plan = make_plan(load_config(config))
    lay = paths.Layout(plan.results)
    max_memory = plan.config["analytic"]["max_memory_mb"] * 2**20
    rows: list[ShardRateRow] = []
    for shards in plan.shard_jobs:
        lead = shards[0]
        bench = Path(lay.benchmark("analytic_shard", paths.SHARD).format(**lead.wildcards))
        stores = list(dict.fromkeys(sh.run for sh in shards))
        if not bench.is_file() or not all(zstore.is_complete(run.store(plan.results)) for run in stores):
            continue
        job_s = _read_benchmark(bench)
        marker = lead.marker(plan.results)
        records = shard_job_records(marker)
        if not all("cpu_seconds" in r for r in records):
            raise LemmseInputError(f"{marker}: its shards carry no cpu_seconds; rerun the job")
        job_cpu = sum(r["cpu_seconds"] for r in records)
        trains = {key: load_split(lay.data(key[0]), "train", count=key[1])
                  for key in dict.fromkeys((run.dataset, run.train_size) for run in stores)}

        reads = ShardReads()  # the stores opened before the clock starts: the engine alone is timed
        for sh in shards:
            reads.dataset(sh.run.store(plan.results), complete=False)
            reads.dataset(lay.measurements(sh.run.eval_dataset, sh.run.task))

        def engine() -> int:
            n = 0
            for sh in shards:
                for *_, y, _result in shard_estimates(
                        sh.run.store(plan.results), measurements=lay.measurements(sh.run.eval_dataset, sh.run.task),
                        train=trains[sh.run.dataset, sh.run.train_size], first_image=sh.image, first_sigma=sh.sigma_index,
                        estimate_options=estimate_options(plan.config, sh.run), device=device, max_memory=max_memory,
                        reads=reads):
                    n += y.shape[0] * y.shape[1]
            return n

        if not rows:
            engine()  # warm once: lazy imports and first-call set-up are a job's start-up, not the engine's
        cpu0, wall0 = time.process_time(), time.perf_counter()
        n = engine()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        kinds = Counter(_diagnostics_kind(zstore.open_dataset(run.store(plan.results))) for run in stores)
        name = Path(paths.SHARD.format(**lead.wildcards)).as_posix()
        row = ShardRateRow(name, len(stores), len(shards), n, ", ".join(f"{k} {c}" for k, c in sorted(kinds.items())),
                           job_s, job_cpu, wall, cpu)
        log.info("%s (%d shards): job %.2f s (shards %.2f CPU-s), engine %.2f s (%.2f CPU-s): %.0f %% (CPU %.0f %%)",
                 row.job, row.shards, job_s, job_cpu, wall, cpu, 100 * row.rate_fraction, 100 * row.cpu_rate_fraction)
        rows.append(row)
        if jobs is not None and len(rows) >= jobs:
            break
    if not rows:
        raise LemmseInputError(f"{config}: no shard job with a benchmark file and complete stores under "
                               f"{plan.results} (run the workflow first)")
    return rows


def table(rows: list[ShardRateRow]) -> str:
    """The Markdown table of ``rows`` and their total (ratios of the sums)."""
    lines = ["| job (first shard) | stores | shards | measurements | diagnostics | job s | engine s | rate "
             "| shards' CPU-s | engine CPU-s | CPU rate |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.job} | {r.stores} | {r.shards} | {r.measurements} | {r.diagnostics} "
                     f"| {r.job_seconds:.2f} | {r.engine_seconds:.2f} | {100 * r.rate_fraction:.0f} % "
                     f"| {r.job_cpu_seconds:.2f} | {r.engine_cpu_seconds:.2f} | {100 * r.cpu_rate_fraction:.0f} % |")
    total = ShardRateRow("**all**", sum(r.stores for r in rows), sum(r.shards for r in rows),
                         sum(r.measurements for r in rows), "", sum(r.job_seconds for r in rows),
                         sum(r.job_cpu_seconds for r in rows), sum(r.engine_seconds for r in rows),
                         sum(r.engine_cpu_seconds for r in rows))
    jobs = f"{len(rows)} job{'s' if len(rows) > 1 else ''}"
    lines.append(f"| **all** ({jobs}) | {total.stores} | {total.shards} | {total.measurements} | "
                 f"| {total.job_seconds:.2f} | {total.engine_seconds:.2f} | **{100 * total.rate_fraction:.0f} %** "
                 f"| {total.job_cpu_seconds:.2f} | {total.engine_cpu_seconds:.2f} "
                 f"| **{100 * total.cpu_rate_fraction:.0f} %** |")
    return "\n".join(lines)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bench-shards`` on the top-level ``subparsers``."""
    from lemmse.cli.common import HelpFormatter, add_verbosity_flags

    p = subparsers.add_parser("bench-shards", help="the workflow's estimator shard jobs against the engine (rate)",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("config", help="the workflow config of the finished run (its results folder is read)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the shard rule's threads)")
    p.add_argument("--device", default="cpu", help="torch device of the engine")
    p.add_argument("--jobs", type=int, default=None, help="stop after this many shard jobs (default: all)")
    p.add_argument("--csv", type=Path, default=None, help="also write the rows to this CSV file")
    add_verbosity_flags(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import torch

    if args.threads < 1:
        raise LemmseInputError(f"--threads {args.threads}: must be >= 1")
    torch.set_num_threads(args.threads)
    rows = measure(args.config, device=args.device, jobs=args.jobs)
    if args.csv is not None:
        import pandas as pd

        pd.DataFrame([{**asdict(r), "rate_fraction": r.rate_fraction, "cpu_rate_fraction": r.cpu_rate_fraction}
                      for r in rows]).to_csv(args.csv, index=False)
    print(table(rows))  # the report is the command's output
    return 0
