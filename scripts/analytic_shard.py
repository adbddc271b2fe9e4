"""Rule analytic_shard: estimate the job's shards (image block × σ block each) into their chunks, then
the job's marker: one JSON record per shard (lemmse.analytic.compute_shard_job)."""
import json

from lemmse.analytic import compute_shard_job
from lemmse.rules import device, start
from lemmse.store import atomic_write_text

job = start(snakemake)  # noqa: F821 - injected by Snakemake
shards = compute_shard_job(job["shards"], device=device(), max_memory=job["max_memory"])
atomic_write_text(snakemake.output[0], json.dumps({"shards": shards}, indent=1))  # noqa: F821
