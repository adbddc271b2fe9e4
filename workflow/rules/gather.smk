# Stage 6: every store reduced to tidy tables (one row per configuration, σ, split, image) and
# the labelled cube metrics.zarr; one table per study for its ablation target.


rule gather:
    input:
        all_evaluations(),
        all_analytic(),
    output:
        metrics=f"{R}/tables/metrics.parquet",
        metrics_csv=f"{R}/tables/metrics.csv",
        analytic=f"{R}/tables/analytic.parquet",
        analytic_csv=f"{R}/tables/analytic.csv",
        cube=directory(f"{R}/tables/metrics.zarr"),
    log:
        f"{LOGS}/gather.log",
    conda:
        ENV
    script:
        "../../scripts/gather.py"


rule study_table:
    input:
        study_inputs,
    output:
        f"{R}/tables/studies/{{study}}.parquet",
    log:
        f"{LOGS}/study_table/{{study}}.log",
    conda:
        ENV
    script:
        "../../scripts/study_table.py"


for _study in config["studies"]:

    rule:
        name:
            f"ablation_{_study}"
        input:
            f"{R}/tables/studies/{_study}.parquet",


rule pair_tables:
    input:
        all_evaluations(),
        all_analytic(),
    output:
        netpairs=f"{R}/tables/netpairs.parquet",
        estimator_pairs=f"{R}/tables/estimator_pairs.parquet",
    log:
        f"{LOGS}/pair_tables.log",
    conda:
        ENV
    script:
        "../../scripts/pair_tables.py"


rule memorisation_table:
    input:
        [str(a.complete_marker(R)) for a in PLAN.memorisation],
    output:
        f"{R}/tables/memorisation.parquet",
    log:
        f"{LOGS}/memorisation_table.log",
    benchmark:
        f"{BENCH}/memorisation_table.tsv"
    conda:
        ENV
    script:
        "../../scripts/memorisation_table.py"
