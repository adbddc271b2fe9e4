"""Rule variance: LE-MMSE over several noise draws, B = I and B = A⁺ (the fig4 store)."""
from lemmse.figures.variance import compute_variance
from lemmse.rules import device, start
from lemmse.plan.config import task_options

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
v, task = plan.config["variance"], snakemake.wildcards.task  # noqa: F821
compute_variance(snakemake.output[0], snakemake.input.data, task=task, sigma=v["sigma"], draws=v["draws"],  # noqa: F821
                 seed=plan.config["seed"], patch=v["patch"], train_size=v["train_size"], n_images=v["images"],
                 device=device(), **task_options(plan.config, task))
