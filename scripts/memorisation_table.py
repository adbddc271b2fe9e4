"""Rule memorisation_table: shift-aware distances of the memorisation stores to the training set."""
from lemmse.memorisation import write_memorisation_table
from lemmse.rules import start

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
write_memorisation_table(plan, snakemake.output[0])  # noqa: F821
