# Stage 2: one measurement store per data set and task, y (split, image, sigma, c, h, w),
# noise seeded per (data set, split, image, σ): networks and estimators see the same y.


rule measure:
    input:
        data=data_store,
    output:
        directory(L.pattern("measurements")),
    params:
        job=job(jobs.measure),
    log:
        L.log("measure", paths.MEASUREMENT),
    conda:
        ENV
    script:
        "../../scripts/measure.py"


rule measurements_all:
    input:
        [str(L.measurements(ds, task)) for ds, task in PLAN.measurement_stores],
