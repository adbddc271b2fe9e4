"""Rule analytic_shard: estimate one image block × σ block into its chunks, then its marker."""
from pathlib import Path

from lemmse.analytic import compute_shard
from lemmse.data import load_split
from lemmse.rules import device, start
from lemmse.plan.sweep import estimate_options

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
w = snakemake.wildcards  # noqa: F821
run = plan.analytic_from_wildcards(w)
compute_shard(run.store(plan.results), measurements=snakemake.input.measurements,  # noqa: F821
              train=load_split(snakemake.input.data, "train", count=run.train_size),  # noqa: F821
              first_image=int(w.image), first_sigma=int(w.sigma_index),
              estimate_options=estimate_options(plan.config, run), device=device(),
              max_memory=plan.config["analytic"]["max_memory_mb"] * 2**20)
Path(snakemake.output[0]).touch()  # noqa: F821
