"""Rule claims: the paper's claims checked on the gathered tables (Markdown and CSV)."""
from lemmse.claims import compute_claims, write_claims
from lemmse.figures import FigureInputs
from lemmse.rules import config_label, start

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
inputs = FigureInputs.load(plan.results / "tables", plan.results, preinverses=plan.config["preinverses"])
claims = compute_claims(inputs.metrics, inputs.analytic, variance=snakemake.params.variance)  # noqa: F821
write_claims(claims, snakemake.output.md, snakemake.output.csv, config_label=config_label(plan),  # noqa: F821
             config=plan.config)
