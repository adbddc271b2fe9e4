# Stage 1: prepared data sets, results/data/{dataset}.zarr (train/test splits, provenance).
# The data set's files are checked here (its configured root exists, sizes fit), not when the
# DAG is built: a config can be planned (snakemake -n, lemmse plan) before any data is fetched.


rule prepare_dataset:
    output:
        directory(f"{R}/data/{{dataset}}.zarr"),
    log:
        f"{LOGS}/prepare_dataset/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare_dataset/{{dataset}}.tsv"
    conda:
        ENV
    script:
        "../../scripts/prepare_dataset.py"


rule datasets_all:
    input:
        [str(PLAN.data_store(name)) for name in PLAN.datasets],
