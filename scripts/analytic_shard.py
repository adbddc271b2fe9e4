"""Rule analytic_shard: estimate one image block × σ block into its chunks, then its marker."""
from pathlib import Path

from lemmse.analytic import compute_shard
from lemmse.data import load_split
from lemmse.rules import device, start

job = start(snakemake)  # noqa: F821 - injected by Snakemake
w = snakemake.wildcards  # noqa: F821
compute_shard(job["store"], measurements=snakemake.input.measurements,  # noqa: F821
              train=load_split(snakemake.input.data, "train", count=job["train_size"]),  # noqa: F821
              first_image=int(w.image), first_sigma=int(w.sigma_index), estimate_options=job["estimate_options"],
              device=device(), max_memory=job["max_memory"])
Path(snakemake.output[0]).touch()  # noqa: F821
