"""Rule analytic_template: the empty estimator store (NaN = not computed), then its marker."""
from pathlib import Path

from lemmse.analytic import create_store
from lemmse.rules import start

job = dict(start(snakemake))  # noqa: F821 - injected by Snakemake
create_store(job.pop("store"), snakemake.input.measurements, **job)  # noqa: F821
Path(snakemake.output[0]).touch()  # noqa: F821
