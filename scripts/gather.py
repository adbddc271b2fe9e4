"""Rule gather: the metrics and analytic tables (Parquet, CSV)."""
from pathlib import Path

from lemmse.gather import write_tables
from lemmse.rules import start

start(snakemake)  # noqa: F821 - injected by Snakemake
plan = snakemake.params.plan  # noqa: F821
write_tables(plan, Path(snakemake.output.metrics).parent)  # noqa: F821
