# Stage 1: prepared data sets, results/data/{dataset}.zarr (train/test splits, provenance).
# The data set's files are checked here (its configured root exists, sizes fit), not when the
# DAG is built: a config can be planned (snakemake -n, lemmse plan) before any data is fetched.


rule prepare_dataset:
    output:
        directory(L.pattern("data")),
    params:
        job=job(jobs.prepare_dataset),
    log:
        L.log("prepare_dataset", paths.DATASET),
    benchmark:
        L.benchmark("prepare_dataset", paths.DATASET)
    conda:
        ENV
    script:
        "../../scripts/prepare_dataset.py"


rule datasets_all:
    input:
        [str(L.data(name)) for name in PLAN.datasets],
