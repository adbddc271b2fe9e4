"""Rule pair_tables: net-vs-net and pre-inverse-vs-pre-inverse PSNR on the same measurements."""
from lemmse.pairs import write_pair_tables
from lemmse.rules import start

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
write_pair_tables(plan, snakemake.output.netpairs, snakemake.output.estimator_pairs)  # noqa: F821
