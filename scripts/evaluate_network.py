"""Rule evaluate_network: the EMA network over the evaluation measurement store (at its own σ only
when it was trained at a fixed σ)."""
from pathlib import Path

from lemmse.rules import device, start
from lemmse.training.infer import infer_store

job = start(snakemake)  # noqa: F821 - injected by Snakemake
infer_store(Path(snakemake.input.trained).parent, snakemake.input.measurements, snakemake.output[0],  # noqa: F821
            device=device(), sigmas=job["sigmas"])
