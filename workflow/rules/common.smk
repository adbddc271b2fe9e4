# Helpers shared by every stage: the validated config, the plan of jobs, the results layout
# (lemmse.plan.layout: every path pattern of the rule files) and input functions. The config is
# checked against lemmse/plan/config.schema.yaml (and for semantics) by lemmse.plan before any job
# is built; a bad key fails here, named.
import os

from lemmse.errors import LemmseInputError
from lemmse.plan import jobs
from lemmse.plan import layout as paths
from lemmse.plan.config import load_config
from lemmse.plan.sweep import make_plan

try:
    config.update(load_config(config))  # in place: scripts see the defaulted config too
except LemmseInputError as err:
    raise WorkflowError(f"invalid config: {err}") from None

PLAN = make_plan(config)
#: Every path: L.pattern(name) in rule files, L.path(name, record) for a job's concrete file.
L = PLAN.layout
#: The software environment of every job (conda users: --use-conda); the same as pip's.
ENV = "../../environment.yml"


def job(make):
    """``params: job=job(jobs.<rule>)``: the job's record from the plan built here (lemmse.plan.jobs);
    scripts read it as ``snakemake.params.job`` and never rebuild the plan."""

    def params(wildcards):
        try:
            return make(PLAN, wildcards)
        except LemmseInputError as err:
            raise WorkflowError(str(err)) from None

    return params


def on_slurm():
    """True in the snakemake that submits to SLURM (not inside a job, not locally)."""
    plugin = workflow.executor_plugin
    return plugin is not None and plugin.cli_prefix == "slurm"


def _fit(rule, mem_mb, what):
    """``mem_mb``, checked against the partition's largest node when submitting to SLURM."""
    from lemmse.cluster import ClusterError, require_fit

    if not on_slurm():
        return mem_mb
    try:
        return require_fit(rule, mem_mb, what)
    except ClusterError as err:
        raise WorkflowError(str(err)) from None


def _network_mem_mb(rule, wildcards):
    from lemmse.cluster import training_memory_mb
    from lemmse.plan.training import training_config

    t = training_config(config, PLAN.network_from_wildcards(wildcards))
    info = PLAN.datasets[wildcards.dataset]
    gpu_job = on_slurm() and int(os.environ.get("LEMMSE_SLURM_GPUS", "1")) > 0
    need = training_memory_mb(t.arch, t.patch, t.preset, t.model_options, channels=info["channels"],
                              resolution=info["resolution"], train_size=int(wildcards.train_size),
                              batch_size=t.batch_size, activations_on_host=not gpu_job)
    return _fit(rule, need, f"{t.arch} P={t.patch}, {wildcards.train_size} images")


def train_mem_mb(wildcards):
    """Host memory of a training job, from its network and data (lemmse.cluster)."""
    return _network_mem_mb("train_network", wildcards)


def eval_mem_mb(wildcards):
    """Host memory of a network evaluation: bounded by that of its training."""
    return _network_mem_mb("evaluate_network", wildcards)


def shard_job(wildcards):
    """The shards of the shard job a job's wildcards name (its first shard)."""
    try:
        return PLAN.shard_job(wildcards)
    except LemmseInputError as err:
        raise WorkflowError(str(err)) from None


def shard_job_inputs(wildcards):
    """The templates, training sets and measurement stores a shard job's shards read."""
    shards = shard_job(wildcards)
    unique = lambda paths: list(dict.fromkeys(str(p) for p in paths))
    return {"templates": unique(L.path("analytic_template", s.run) for s in shards),
            "data": unique(L.data(s.run.dataset) for s in shards),
            "measurements": unique(L.measurements(s.run.eval_dataset, s.run.task) for s in shards)}


def _shard_job_mem_mb(shards):
    """Host memory of a shard job: analytic.max_memory_mb plus process and its largest shard's data
    (its shards run one after the other, one training set loaded at a time)."""
    from lemmse.cluster import shard_memory_mb

    bound = config["analytic"]["max_memory_mb"]
    need = max(shard_memory_mb(bound, channels=PLAN.datasets[s.run.dataset]["channels"],
                               resolution=PLAN.datasets[s.run.dataset]["resolution"],
                               train_size=s.run.train_size) for s in shards)
    return _fit("analytic_shard", need, f"analytic.max_memory_mb={bound} plus data and process")


def shard_mem_mb(wildcards):
    return _shard_job_mem_mb(shard_job(wildcards))


def check_requests_fit():
    """Size every heavy job of the plan now, so that one no node can hold stops the run before
    the first submission (resources are otherwise evaluated only when a job is ready)."""
    from types import SimpleNamespace

    for n in PLAN.networks:  # as a job's wildcards: strings, the training noise as its spec
        train_mem_mb(SimpleNamespace(**{k: str(v) for k, v in n.wildcards.items()}))
    for shards in PLAN.shard_jobs:
        _shard_job_mem_mb(shards)


onstart:
    if on_slurm():
        check_requests_fit()


def data_store(wildcards):
    """The prepared data set a job trains on."""
    return str(L.data(wildcards.dataset))


def eval_measurements(wildcards):
    """The measurement store of the data set a job is evaluated on."""
    return str(L.measurements(wildcards.eval_dataset, wildcards.task))


def trained_for_eval(wildcards):
    """The training marker of the network an evaluation job runs."""
    return L.pattern("trained").format(**wildcards)


def trained_marker(run):
    return str(L.path("trained", run))


def analytic_run(wildcards):
    """The AnalyticRun a job's wildcards name (refused when the plan has no such store)."""
    try:
        return PLAN.analytic_from_wildcards(wildcards)
    except LemmseInputError as err:
        raise WorkflowError(str(err)) from None


def shard_markers(wildcards):
    """The markers of the shard jobs that write into one analytic store."""
    return [str(job[0].marker(PLAN.results)) for job in PLAN.shard_jobs_of(analytic_run(wildcards))]


def all_trained():
    return [trained_marker(r) for r in PLAN.networks]


def all_evaluations():
    return [str(L.path("evaluation", e)) for e in PLAN.evaluations]


def all_analytic():
    return [str(L.path("analytic_complete", a)) for a in PLAN.analytics]


def all_shard_markers():
    """Every shard job's marker. Targets (all, analytic_all) list them themselves: snakemake reruns
    the producer of a missing file only when a job that must run needs it, so a deleted marker is
    noticed by the next run of a target, which then reruns that job and re-finalizes its stores."""
    return [str(job[0].marker(PLAN.results)) for job in PLAN.shard_jobs]


def study_inputs(wildcards):
    """Evaluation stores and analytic markers of one study."""
    comparisons = PLAN.studies[wildcards.study]
    return sorted({str(L.path("evaluation", c.evaluation)) for c in comparisons}
                  | {str(L.path("analytic_complete", c.analytic)) for c in comparisons})


def gathered_tables():
    return [str(L.table(name)) for name in paths.GATHERED]


def study_tables():
    return [str(L.path("study_table", study=name)) for name in config["studies"]]


def planned_figures():
    """Figure name -> its Selection on the planned table rows (before any job), or the reason the
    config does not cover it; fig4 -> None when the variance stage runs, else the reason."""
    from lemmse.figures import VARIANCE_FIGURE, FIGURES as REGISTRY, selections
    from lemmse.gather import planned_tables

    metrics, analytic = planned_tables(PLAN)
    # facets and stores depend on key columns only, and no figure reads more than the first image of
    # a split: the first image's rows decide the same (100× fewer rows at paper scale)
    first = lambda t: t[t["image"] == t["image"].min()] if len(t) else t
    chosen = selections(first(metrics), first(analytic), config=config)
    chosen[VARIANCE_FIGURE] = None if PLAN.variance_tasks() else "the variance stage is not run (variance.dataset is null)"
    return {name: chosen[name] for name in REGISTRY}


PLANNED_FIGURES = planned_figures()
#: The figures this config covers (each a rule and target), and the others with the reason.
FIGURES = [name for name, sel in PLANNED_FIGURES.items() if not isinstance(sel, str)]
SKIPPED_FIGURES = {name: sel for name, sel in PLANNED_FIGURES.items() if isinstance(sel, str)}


def variance_stores():
    return {task: str(L.variance(config["variance"]["dataset"], task)) for task in PLAN.variance_tasks()}


def _analytic_path(dataset, eval_dataset, task, preinverse, kind, patch, train_size):
    """The completion marker of the estimator store of that kind (the label named like the kind first)."""
    runs = [a for a in PLAN.analytics
            if (a.dataset, a.eval_dataset, a.task, a.preinverse, a.patch, a.train_size)
            == (dataset, eval_dataset, task, preinverse, patch, train_size) and PLAN.kind(a) == kind]
    if not runs:
        raise WorkflowError(f"no {kind} store for {dataset} → {eval_dataset}, {task}/{preinverse}, P{patch}, N{train_size}")
    runs.sort(key=lambda a: a.estimator != kind)
    return str(L.path("analytic_complete", runs[0]))


def _network_path(dataset, eval_dataset, task, preinverse, arch, patch, train_size):
    for e in PLAN.evaluations:
        r = e.run
        if (r.dataset, e.eval_dataset, r.task, r.preinverse, r.arch, r.patch, r.train_size) == (
                dataset, eval_dataset, task, preinverse, arch, patch, train_size):
            return str(L.path("evaluation", e))
    raise WorkflowError(f"no network evaluation {arch} {dataset} → {eval_dataset}, {task}/{preinverse}, P{patch}, "
                        f"N{train_size}")


def store_path(key):
    """The workflow file behind a store key of a figure selection (lemmse.figures.select)."""
    kind, *rest = key
    if kind == "analytic":
        return _analytic_path(*rest)
    if kind == "network":
        return _network_path(*rest)
    if kind == "measurements":
        return str(L.measurements(*rest))
    if kind == "data":
        return str(L.data(*rest))
    if kind == "memorisation":
        return str(L.table("memorisation.parquet"))
    raise WorkflowError(f"unknown store kind {kind!r} in {key}")


def figure_inputs(name):
    """The tables and the stores figure ``name`` reads, nothing else (fig4: its variance stores)."""
    tables = [str(L.table("metrics.parquet")), str(L.table("analytic.parquet"))]
    sel = PLANNED_FIGURES[name]
    if sel is None:  # fig4 reads its variance stores (the script loads the tables too)
        return tables + list(variance_stores().values())
    return tables + list(dict.fromkeys(store_path(key) for key in sel.stores))


def claims_inputs():
    """Tables, every store (the claims read the tables), and the variance stores."""
    return [*gathered_tables(), *all_evaluations(), *all_analytic(), *variance_stores().values()]


def not_covered(name):
    """An input function that refuses, naming what the config lacks for figure ``name``."""

    def refuse(wildcards):
        raise WorkflowError(f"{name} is not covered by this config: {SKIPPED_FIGURES[name]}")

    return refuse
