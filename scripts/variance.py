"""Rule variance: LE-MMSE over several noise draws, B = I and B = A⁺ (the fig4 store)."""
from lemmse.figures.variance import compute_variance
from lemmse.rules import device, start

job = start(snakemake)  # noqa: F821 - injected by Snakemake
compute_variance(snakemake.output[0], snakemake.input.data, device=device(), **job)  # noqa: F821
