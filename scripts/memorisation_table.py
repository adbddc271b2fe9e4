"""Rule memorisation_table: shift-aware distances of the memorisation stores to the training set."""
from lemmse.memorisation import write_memorisation_table
from lemmse.rules import start

start(snakemake)  # noqa: F821 - injected by Snakemake
plan = snakemake.params.plan  # noqa: F821
write_memorisation_table(plan, snakemake.output[0])  # noqa: F821
