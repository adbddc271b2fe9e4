# Stage 5: analytic estimator stores. The store is created empty first; shards (image block × σ
# block) fill chunk-aligned regions in parallel, one writer per chunk. A shard job runs
# analytic.shards_per_job consecutive shards (possibly of several stores) in one process and is
# named after its first shard; its marker records each shard. The finalize job of a store waits for
# every job holding one of its shards, checks nothing is missing and marks the store complete.


rule analytic_template:
    input:
        measurements=eval_measurements,
    output:
        L.pattern("analytic_template"),
    params:
        job=job(jobs.analytic_template),
    log:
        L.log("analytic_template", paths.ANALYTIC),
    group:
        "small"
    conda:
        ENV
    script:
        "../../scripts/analytic_template.py"


rule analytic_shard:
    input:
        unpack(shard_job_inputs),
    output:
        L.pattern("analytic_shard"),
    params:
        job=job(jobs.analytic_shard),
    log:
        L.log("analytic_shard", paths.SHARD),
    benchmark:
        L.benchmark("analytic_shard", paths.SHARD)
    group:
        "analytic_shards"
    threads: 2
    resources:
        runtime=120,
        mem_mb=shard_mem_mb,
    conda:
        ENV
    script:
        "../../scripts/analytic_shard.py"


rule analytic_finalize:
    input:
        shard_markers,
    output:
        L.pattern("analytic_complete"),
    params:
        job=job(jobs.analytic_finalize),
    log:
        L.log("analytic_finalize", paths.ANALYTIC),
    group:
        "finalize"
    conda:
        ENV
    script:
        "../../scripts/analytic_finalize.py"


rule analytic_all:
    input:
        all_analytic(),
        all_shard_markers(),
