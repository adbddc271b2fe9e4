"""Rule claims: the paper's claims checked on the gathered tables (Markdown and CSV)."""
import pandas as pd

from lemmse.claims import compute_claims, write_claims
from lemmse.claims.timing import read_timings
from lemmse.figures import FigureInputs
from lemmse.rules import config_label, start

start(snakemake)  # noqa: F821 - injected by Snakemake
plan = snakemake.params.plan  # noqa: F821
cfg = plan.config
inputs = FigureInputs.load(plan.layout.table("metrics.parquet").parent, plan.results, preinverses=cfg["preinverses"])
timings = read_timings(plan.results, n_eval=cfg["measurements"]["n_eval"], n_sigma=len(cfg["measurements"]["sigmas"]),
                       lemmse_labels={a.estimator for a in plan.analytics if plan.is_lemmse(a)})
claims = compute_claims(inputs.metrics, inputs.analytic, variance=snakemake.params.variance,  # noqa: F821
                        netpairs=pd.read_parquet(snakemake.input.netpairs),  # noqa: F821
                        estimator_pairs=pd.read_parquet(snakemake.input.estimator_pairs),  # noqa: F821
                        memorisation=pd.read_parquet(snakemake.input.memorisation),  # noqa: F821
                        timings=timings, resolutions={d: i["resolution"] for d, i in plan.datasets.items()},
                        preinverses=cfg["preinverses"])
write_claims(claims, snakemake.output.md, snakemake.output.csv, config_label=config_label(plan),  # noqa: F821
             config=cfg, metrics=inputs.metrics)
