"""Rule prepare_dataset: build results/data/{dataset}.zarr with lemmse.data.prepare_dataset."""
from lemmse.data import prepare_dataset
from lemmse.rules import start
from lemmse.sweep import dataset_source

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
source, options = dataset_source(plan.config, snakemake.wildcards.dataset)  # noqa: F821
prepare_dataset(source, snakemake.output[0], **options)  # noqa: F821
