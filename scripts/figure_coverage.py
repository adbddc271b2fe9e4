"""Rule figure_coverage: the figures this config covers and those it skips, with the reason."""
from lemmse.figures import write_coverage
from lemmse.rules import start

start(snakemake)  # noqa: F821 - injected by Snakemake
write_coverage(snakemake.params.covered, snakemake.params.skipped, snakemake.output[0])  # noqa: F821
