"""Rule analytic_finalize: check every shard landed, mark the store complete, then its marker."""
from pathlib import Path

from lemmse.analytic import finalize_store
from lemmse.rules import start

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
run = plan.analytic_from_wildcards(snakemake.wildcards)  # noqa: F821
finalize_store(run.store(plan.results))
Path(snakemake.output[0]).touch()  # noqa: F821
