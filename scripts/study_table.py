"""Rule study_table: the metrics rows of one study (its ablation target), as Parquet and as a cube."""
from lemmse.gather import study_table
from lemmse.rules import start

start(snakemake)  # noqa: F821 - injected by Snakemake
plan = snakemake.params.plan  # noqa: F821
study_table(plan, snakemake.wildcards.study, snakemake.output.table, cube=snakemake.output.cube)  # noqa: F821
