# Stage 5: analytic estimator stores. The store is created empty first; shard jobs (image block
# × σ block) fill chunk-aligned regions in parallel, one writer per chunk, each leaving a marker;
# the finalize job checks nothing is missing and marks the store complete.


rule analytic_template:
    input:
        measurements=eval_measurements,
    output:
        f"{R}/analytic/{ANALYTIC}.template",
    log:
        f"{LOGS}/analytic_template/{ANALYTIC}.log",
    group:
        "small"
    conda:
        ENV
    script:
        "../../scripts/analytic_template.py"


rule analytic_shard:
    input:
        template=f"{R}/analytic/{ANALYTIC}.template",
        data=data_store,
        measurements=eval_measurements,
    output:
        f"{R}/analytic/{ANALYTIC}.shards/i{{image}}-s{{sigma_index}}.done",
    log:
        f"{LOGS}/analytic_shard/{ANALYTIC}/i{{image}}-s{{sigma_index}}.log",
    benchmark:
        f"{BENCH}/analytic_shard/{ANALYTIC}/i{{image}}-s{{sigma_index}}.tsv"
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
        f"{R}/analytic/{ANALYTIC}.complete",
    log:
        f"{LOGS}/analytic_finalize/{ANALYTIC}.log",
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
