"""Rule fig*/table2*: select then draw one figure of the paper from the gathered tables and the stores."""
from pathlib import Path

from lemmse.figures import FigureInputs, Reference, make_figure
from lemmse.rules import config_label, start

start(snakemake)  # noqa: F821 - injected by Snakemake
plan = snakemake.params.plan  # noqa: F821
out = Path(snakemake.output[0])  # noqa: F821
tables = plan.layout.table("metrics.parquet").parent
inputs = FigureInputs.load(tables, plan.results, preinverses=plan.config["preinverses"],
                           variance_stores={t: Path(p) for t, p in snakemake.params.variance.items()})  # noqa: F821
make_figure(snakemake.params.figure, inputs, out, config_label=config_label(plan),  # noqa: F821
            reference=Reference.from_config(plan.config))
