# Stage 4: network outputs on the measurement grid of the evaluation data set.


rule evaluate_network:
    input:
        trained=trained_for_eval,
        measurements=eval_measurements,
    output:
        directory(f"{R}/networks/{MODEL}/{{eval_dataset}}.zarr"),
    log:
        f"{LOGS}/evaluate_network/{MODEL}/{{eval_dataset}}.log",
    benchmark:
        f"{BENCH}/evaluate_network/{MODEL}/{{eval_dataset}}.tsv"
    threads: 2
    resources:
        runtime=60,
        mem_mb=8000,
    conda:
        ENV
    script:
        "../../scripts/evaluate_network.py"


rule evaluate_all:
    input:
        all_evaluations(),
