"""Rule analytic_finalize: check every shard landed, mark the store complete, then its marker."""
from pathlib import Path

from lemmse.analytic import finalize_store
from lemmse.rules import start

job = start(snakemake)  # noqa: F821 - injected by Snakemake
finalize_store(job["store"])
Path(snakemake.output[0]).touch()  # noqa: F821
