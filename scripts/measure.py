"""Rule measure: the measurement store of one data set and task (lemmse.data.build_measurements)."""
from lemmse.data import build_measurements
from lemmse.rules import start
from lemmse.plan.config import task_options

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
meas, task = plan.config["measurements"], snakemake.wildcards.task  # noqa: F821
build_measurements(snakemake.output[0], snakemake.input.data, task=task, sigmas=meas["sigmas"],  # noqa: F821
                   n_eval=meas["n_eval"], seed=plan.config["seed"], image_chunk=meas["image_chunk"],
                   **task_options(plan.config, task))
