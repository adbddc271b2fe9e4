"""The pipeline's plan: one place for every fact between the config and the jobs.

* :mod:`lemmse.plan.layout` — THE results layout: every path the workflow writes, as a Snakemake
  wildcard pattern and as the concrete path of a job record (the two cannot drift apart);
* :mod:`lemmse.plan.specs` — pre-inverse and estimator labels resolved once into typed specs.

Config validation and the job records live in :mod:`lemmse.sweep` (which uses both).
"""
