"""Rule prepare_dataset: check the data set's files (root named in the config), then build
results/data/{dataset}.zarr with lemmse.data.prepare_dataset."""
from lemmse.data import prepare_dataset
from lemmse.plan.config import check_dataset_files
from lemmse.rules import start

job = start(snakemake)  # noqa: F821 - injected by Snakemake
source, options = check_dataset_files(job["config"], job["dataset"])
prepare_dataset(source, snakemake.output[0], **options)  # noqa: F821
