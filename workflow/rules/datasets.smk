# Stage 1: prepared data sets, results/data/{dataset}.zarr (train/test splits, provenance).


rule prepare_dataset:
    output:
        directory(f"{R}/data/{{dataset}}.zarr"),
    log:
        f"{LOGS}/prepare_dataset/{{dataset}}.log",
    conda:
        ENV
    script:
        "../../scripts/prepare_dataset.py"


rule datasets_all:
    input:
        [str(PLAN.data_store(name)) for name in PLAN.datasets],
