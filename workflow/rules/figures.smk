# Stage 7: the paper's figures (one rule and target each, named like the figure), the claims
# report, and the fig4 noise-draw variance stores. Figures read the tables and stores only.


rule variance:
    input:
        data=data_store,
    output:
        directory(L.pattern("variance")),
    params:
        job=job(jobs.variance),
    log:
        L.log("variance", paths.VARIANCE),
    benchmark:
        L.benchmark("variance", paths.VARIANCE)
    threads: 2
    conda:
        ENV
    script:
        "../../scripts/variance.py"


for _figure in FIGURES:

    rule:
        name:
            _figure
        input:
            figure_inputs(_figure),
        output:
            report(
                str(L.path("figure", figure=_figure)),
                caption=f"../report/{_figure}.rst",
                category="Figures",
            ),
        params:
            figure=_figure,
            variance=variance_stores(),
            plan=PLAN,
        log:
            L.log("figures", _figure),
        conda:
            ENV
        script:
            "../../scripts/figure.py"


# A figure the config cannot cover is still a target: asking for it fails with the reason.
for _figure in SKIPPED_FIGURES:

    rule:
        name:
            _figure
        input:
            not_covered(_figure),


rule figure_coverage:
    output:
        report(L.pattern("coverage"), caption="../report/coverage.rst", category="Figures"),
    params:
        covered=FIGURES,
        skipped=SKIPPED_FIGURES,
    log:
        L.log("figures", "coverage"),
    conda:
        ENV
    script:
        "../../scripts/figure_coverage.py"


rule claims:
    input:
        claims_inputs(),
        netpairs=str(L.table("netpairs.parquet")),
        estimator_pairs=str(L.table("estimator_pairs.parquet")),
        memorisation=str(L.table("memorisation.parquet")),
    output:
        md=report(L.pattern("claims_md"), caption="../report/claims.rst", category="Claims"),
        csv=L.pattern("claims_csv"),
    params:
        variance=variance_stores(),
        plan=PLAN,
    log:
        L.log("claims"),
    conda:
        ENV
    script:
        "../../scripts/claims.py"


rule figures_all:
    input:
        [str(L.path("figure", figure=name)) for name in FIGURES],
        L.pattern("coverage"),
        L.pattern("claims_md"),
