"""The pipeline's plan: one place for every fact between the config and the jobs.

* :mod:`lemmse.plan.config` — the config validated (schema ``config.schema.yaml`` beside it, then
  semantics) and the label lookups every job needs;
* :mod:`lemmse.plan.specs` — pre-inverse and estimator labels resolved once into typed specs;
* :mod:`lemmse.plan.records` — the frozen job records (networks, their training noise,
  evaluations, estimator stores, comparisons);
* :mod:`lemmse.plan.sweep` — :func:`~lemmse.plan.sweep.make_plan`, the config expanded into records,
  and the job counts of ``snakemake all``;
* :mod:`lemmse.plan.training` — each network's training settings;
* :mod:`lemmse.plan.jobs` — what each rule hands its job (``params:``), so no job rebuilds the plan;
* :mod:`lemmse.plan.layout` — THE results layout: every path the workflow writes, as a Snakemake
  wildcard pattern and as the concrete path of a record.

None of these imports PyTorch: the workflow plans in its own process and in every job.
"""
from lemmse.lazy import lazy_exports

_EXPORTS = {"load_config": "config", "make_plan": "sweep", "Plan": "sweep", "AnalyticRun": "records",
            "Comparison": "records", "NetworkEval": "records", "NetworkRun": "records", "TrainingNoise": "records"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
