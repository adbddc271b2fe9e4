# Stage 3: one network per dataset × task × pre-inverse × arch × P × N × σ-range. The output is
# a marker written after the last step; model.pt (the checkpoint) is not a declared output, so
# a job killed mid-run keeps it and the rerun resumes from it.


rule train_network:
    input:
        data=data_store,
    output:
        L.pattern("trained"),
    params:
        job=job(jobs.train_network),
    log:
        L.log("train_network", paths.NETWORK),
    benchmark:
        L.benchmark("train_network", paths.NETWORK)
    threads: 2
    # A job stopped at its time limit (or pre-empted) checkpoints and exits 75; each retry
    # resumes, so a training longer than the partition's limit finishes in several attempts.
    retries: 10
    resources:
        runtime=240,
        mem_mb=train_mem_mb,
    conda:
        ENV
    script:
        "../../scripts/train_network.py"


rule train_all:
    input:
        all_trained(),
