"""Rule gather: the metrics and analytic tables (Parquet, CSV)."""
from pathlib import Path

from lemmse.gather import write_tables
from lemmse.rules import start

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
write_tables(plan, Path(snakemake.output.metrics).parent)  # noqa: F821
