"""Rule prepare_dataset: check the data set's files (root named in the config), then build
results/data/{dataset}.zarr with lemmse.data.prepare_dataset."""
from lemmse.data import prepare_dataset
from lemmse.rules import start
from lemmse.plan.config import check_dataset_files

plan = start(snakemake)  # noqa: F821 - injected by Snakemake
source, options = check_dataset_files(plan.config, snakemake.wildcards.dataset)  # noqa: F821
prepare_dataset(source, snakemake.output[0], **options)  # noqa: F821
