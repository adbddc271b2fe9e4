# Stage 4: network outputs on the measurement grid of the evaluation data set.


rule evaluate_network:
    input:
        trained=trained_for_eval,
        measurements=eval_measurements,
    output:
        directory(L.pattern("evaluation")),
    params:
        job=job(jobs.evaluate_network),
    log:
        L.log("evaluate_network", paths.EVALUATION),
    benchmark:
        L.benchmark("evaluate_network", paths.EVALUATION)
    threads: 2
    resources:
        runtime=60,
        mem_mb=eval_mem_mb,
    conda:
        ENV
    script:
        "../../scripts/evaluate_network.py"


rule evaluate_all:
    input:
        all_evaluations(),
