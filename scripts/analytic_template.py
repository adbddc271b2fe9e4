"""Rule analytic_template: the empty estimator store (NaN = not computed), then its marker."""
from pathlib import Path

from lemmse.analytic import create_store
from lemmse.rules import start
from lemmse.plan.sweep import analytic_attrs

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
run = plan.analytic_from_wildcards(snakemake.wildcards)  # noqa: F821
create_store(run.store(plan.results), snakemake.input.measurements,  # noqa: F821
             images_per_shard=plan.config["analytic"]["images_per_shard"],
             sigmas_per_shard=plan.config["analytic"]["sigmas_per_shard"],
             diagnostics=plan.wants_diagnostics(run), mass=plan.wants_mass(run), attrs=analytic_attrs(plan, run))
Path(snakemake.output[0]).touch()  # noqa: F821
