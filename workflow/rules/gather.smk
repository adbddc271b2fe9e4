# Stage 6: every store reduced to tidy tables (one row per configuration, σ, split, image); one
# table and one labelled cube (dense within the study) per study, for its ablation target.


rule gather:
    input:
        all_evaluations(),
        all_analytic(),
    output:
        metrics=str(L.table("metrics.parquet")),
        metrics_csv=str(L.table("metrics.csv")),
        analytic=str(L.table("analytic.parquet")),
        analytic_csv=str(L.table("analytic.csv")),
    params:
        plan=PLAN,
    log:
        L.log("gather"),
    conda:
        ENV
    script:
        "../../scripts/gather.py"


rule study_table:
    input:
        study_inputs,
    output:
        table=L.pattern("study_table"),
        cube=directory(L.pattern("study_cube")),
    params:
        plan=PLAN,
    log:
        L.log("study_table", paths.STUDY),
    conda:
        ENV
    script:
        "../../scripts/study_table.py"


for _study in config["studies"]:

    rule:
        name:
            f"ablation_{_study}"
        input:
            str(L.path("study_table", study=_study)),


rule pair_tables:
    input:
        all_evaluations(),
        all_analytic(),
    output:
        netpairs=str(L.table("netpairs.parquet")),
        estimator_pairs=str(L.table("estimator_pairs.parquet")),
    params:
        plan=PLAN,
    log:
        L.log("pair_tables"),
    conda:
        ENV
    script:
        "../../scripts/pair_tables.py"


rule memorisation_table:
    input:
        [str(L.path("analytic_complete", a)) for a in PLAN.memorisation],
    output:
        str(L.table("memorisation.parquet")),
    params:
        plan=PLAN,
    log:
        L.log("memorisation_table"),
    benchmark:
        L.benchmark("memorisation_table")
    conda:
        ENV
    script:
        "../../scripts/memorisation_table.py"
