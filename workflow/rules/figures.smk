# Stage 7: the paper's figures (one rule and target each, named like the figure), the claims
# report, and the fig4 noise-draw variance stores. Figures read the tables and stores only.


rule variance:
    input:
        data=data_store,
    output:
        directory(f"{R}/variance/{{dataset}}/{{task}}.zarr"),
    log:
        f"{LOGS}/variance/{{dataset}}/{{task}}.log",
    benchmark:
        f"{BENCH}/variance/{{dataset}}/{{task}}.tsv"
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
                f"{R}/figures/{_figure}.png",
                caption=f"../report/{_figure}.rst",
                category="Figures",
            ),
        params:
            figure=_figure,
            variance=variance_stores(),
        log:
            f"{LOGS}/figures/{_figure}.log",
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
        report(f"{R}/figures/coverage.md", caption="../report/coverage.rst", category="Figures"),
    params:
        covered=FIGURES,
        skipped=SKIPPED_FIGURES,
    log:
        f"{LOGS}/figures/coverage.log",
    conda:
        ENV
    script:
        "../../scripts/figure_coverage.py"


rule claims:
    input:
        claims_inputs(),
        netpairs=f"{R}/tables/netpairs.parquet",
        estimator_pairs=f"{R}/tables/estimator_pairs.parquet",
        memorisation=f"{R}/tables/memorisation.parquet",
    output:
        md=report(f"{R}/claims.md", caption="../report/claims.rst", category="Claims"),
        csv=f"{R}/claims.csv",
    params:
        variance=variance_stores(),
        benchmarks=BENCH,
    log:
        f"{LOGS}/claims.log",
    conda:
        ENV
    script:
        "../../scripts/claims.py"


rule figures_all:
    input:
        [f"{R}/figures/{name}.png" for name in FIGURES],
        f"{R}/figures/coverage.md",
        f"{R}/claims.md",
