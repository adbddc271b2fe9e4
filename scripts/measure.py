"""Rule measure: the measurement store of one data set and task (lemmse.data.build_measurements)."""
from lemmse.data import build_measurements
from lemmse.rules import start

job = start(snakemake)  # noqa: F821 - injected by Snakemake
build_measurements(snakemake.output[0], snakemake.input.data, **job)  # noqa: F821
