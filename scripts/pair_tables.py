"""Rule pair_tables: net-vs-net and pre-inverse-vs-pre-inverse PSNR on the same measurements."""
from lemmse.pairs import write_pair_tables
from lemmse.rules import start

start(snakemake)  # noqa: F821 - injected by Snakemake
plan = snakemake.params.plan  # noqa: F821
write_pair_tables(plan, snakemake.output.netpairs, snakemake.output.estimator_pairs)  # noqa: F821
