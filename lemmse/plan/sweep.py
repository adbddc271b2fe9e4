r"""The plan: a validated config expanded into every job it asks for.

:func:`make_plan` expands the studies into the frozen records of :mod:`lemmse.plan.records` —
one :class:`~lemmse.plan.records.NetworkRun` per data set × problem × architecture × P × N ×
training noise (``train_sigmas``), its evaluations, the estimator stores and the comparisons that
pair them (one block of rows of the ``metrics`` table each) — deduplicated, in a stable order.
Labels are resolved once into :mod:`lemmse.plan.specs`; ``Plan.analytic_keys``/``Plan.metrics_keys``
give a record's table columns, :meth:`Plan.wants_diagnostics`/:meth:`Plan.wants_mass` decide which
stores compute which diagnostics. The rule files build the plan once, in the Snakemake process, and
hand each job its record (``params:``); no job rebuilds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from lemmse.errors import LemmseInputError
from lemmse.plan.config import dataset_info, preinverse_options, task_options
from lemmse.plan.layout import Layout
from lemmse.plan.records import AnalyticRun, Comparison, NetworkEval, NetworkRun, Shard, TrainingNoise
from lemmse.plan.specs import BUILTIN_ESTIMATORS, Estimator, PreInverse, estimator_specs, lookup, preinverse_specs

#: The wildcards naming one network (:data:`lemmse.plan.layout.NETWORK`).
NETWORK_WILDCARDS = ("dataset", "task", "preinverse", "arch", "patch", "train_size", "spec")


@dataclass
class Plan:
    """Every job a config asks for, deduplicated, in a stable order."""

    config: dict
    results: Path
    datasets: dict[str, dict]
    measurement_stores: list[tuple[str, str]] = field(default_factory=list)  # (dataset, task)
    networks: list[NetworkRun] = field(default_factory=list)
    evaluations: list[NetworkEval] = field(default_factory=list)
    analytics: list[AnalyticRun] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    studies: dict[str, list[Comparison]] = field(default_factory=dict)
    memorisation: list[AnalyticRun] = field(default_factory=list)
    #: Pre-inverse and estimator labels resolved once (:mod:`lemmse.plan.specs`).
    preinverses: dict[str, PreInverse] = field(default_factory=dict)
    estimators: dict[str, Estimator] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        """The results layout (:mod:`lemmse.plan.layout`) under this plan's results folder."""
        return Layout(self.results)

    def data_store(self, dataset: str) -> Path:
        return self.layout.data(dataset)

    def measurement_store(self, dataset: str, task: str) -> Path:
        return self.layout.measurements(dataset, task)

    def sigmas(self) -> list[float]:
        return list(self.config["measurements"]["sigmas"])

    def network_from_wildcards(self, wildcards) -> NetworkRun:
        """The :class:`NetworkRun` named by a training job's wildcards (refused if the plan has none)."""
        key = {name: str(getattr(wildcards, name)) for name in NETWORK_WILDCARDS}
        for run in self.networks:
            if {name: str(value) for name, value in run.wildcards.items()} == key:
                return run
        raise LemmseInputError(f"the config asks for no network {key}")

    def evaluated_sigmas(self, evaluation: NetworkEval) -> list[float]:
        """The σ of the measurement grid ``evaluation`` runs (and is compared) at: every σ for a
        σ-conditioned network, its own σ for one trained at a fixed σ."""
        return evaluation.run.noise.evaluated(self.sigmas())

    def analytic_from_wildcards(self, wildcards) -> AnalyticRun:
        """The :class:`AnalyticRun` named by a job's wildcards (refused if the plan has none)."""
        run = AnalyticRun(wildcards.dataset, wildcards.eval_dataset, wildcards.task, wildcards.preinverse,
                          wildcards.estimator, int(wildcards.patch), int(wildcards.train_size))
        if run not in self.analytics:
            raise LemmseInputError(f"the config asks for no analytic store {run}")
        return run

    def preinverse(self, label: str) -> PreInverse:
        """The resolved pre-inverse of a label (refused, naming the config section, if undefined)."""
        return lookup(self.preinverses, label, "preinverses")

    def estimator(self, label: str) -> Estimator:
        """The resolved estimator of a label (refused, naming the config section, if undefined)."""
        return lookup(self.estimators, label, "estimators")

    def kind(self, run: AnalyticRun) -> str:
        """The estimator kind (mmse, emmse, lemmse, smoothed) of ``run``'s label."""
        return self.estimator(run.estimator).kind

    def is_lemmse(self, run: AnalyticRun) -> bool:
        """Whether ``run`` is a plain LE-MMSE store."""
        return self.kind(run) == "lemmse"

    def analytic_keys(self, run: AnalyticRun) -> dict[str, Any]:
        """The columns of ``run``'s rows of the ``analytic`` table but σ, split and image (keys and
        label columns of :mod:`lemmse.tables`), labels resolved here once."""
        pre, est = self.preinverse(run.preinverse), self.estimator(run.estimator)
        return {"dataset": run.dataset, "eval_dataset": run.eval_dataset, "task": run.task,
                "preinverse": run.preinverse, "estimator": est.kind, "smoothing": est.smoothing, "patch": run.patch,
                "train_size": run.train_size, "preinverse_kind": pre.kind,
                "lam": pre.lam if pre.lam is not None else float("nan"), "estimator_label": est.label}

    def metrics_keys(self, comparison: "Comparison") -> dict[str, Any]:
        """The columns of ``comparison``'s rows of the ``metrics`` table but σ, split and image."""
        net = comparison.evaluation.run
        return {**self.analytic_keys(comparison.analytic), "dataset": net.dataset,
                "eval_dataset": comparison.evaluation.eval_dataset, "arch": net.arch, "train_sigma": net.spec,
                "train_sigma_min": net.noise.low, "train_sigma_max": net.noise.high}

    def wants_diagnostics(self, run: AnalyticRun) -> bool:
        """Whether ``run``'s store computes the LE-MMSE diagnostics — THE one place this is decided.

        A store computes them only when some figure or claim reads them, i.e. when it is a plain
        LE-MMSE store of a study (not memorisation-only), evaluated on its own data set. Readers:

        * gather (:mod:`lemmse.gather`): the density and mass columns of the metrics and analytic
          tables, on LE-MMSE rows only (NaN elsewhere);
        * Fig. 6 (``neg_log_density_image_paper`` of in-distribution metrics rows against the
          LE-MMSE), Fig. 17 (``neg_log_density_patch_paper`` of in-distribution analytic rows);
        * Fig. 20–22 (``mass99_observed_*`` and the ``mass99`` maps) and Fig. 23 (the ``source``
          maps), both on in-distribution LE-MMSE stores;
        * the claims of :mod:`lemmse.claims` on density and mass (in-distribution LE-MMSE rows).

        Not read, so not computed: smoothed, MMSE and E-MMSE stores (diagnostics are defined for the
        LE-MMSE only), memorisation-only LE-MMSE stores (Fig. 2 reads their estimates and distances),
        and out-of-distribution stores (Fig. 7 reads PSNRs only). A new reader of diagnostics on
        other stores must widen this rule here.
        """
        return (self.is_lemmse(run) and run.eval_dataset == run.dataset
                and any(c.analytic == run for c in self.comparisons))

    def wants_mass(self, run: AnalyticRun) -> bool:
        """Whether ``run``'s store also runs the 99 %-mass pass (the one diagnostic with a pass of its
        own): a store with diagnostics at the figures' reference P and N (``figures.reference``), which
        is where Fig. 20–22 read the mass and what the mass claims compare across σ and B. The
        patch-size and dataset-size stores away from it keep their densities and source maps (Fig. 17,
        23) but skip the pass — at the paper's scale the N = 50 000 stores are the sweep's dearest.
        """
        from lemmse.figures.select import Reference

        if not self.wants_diagnostics(run):
            return False
        ref = Reference.from_config(self.config)
        return ref.patch in (None, run.patch) and ref.train_size in (None, run.train_size)

    def variance_tasks(self) -> list[str]:
        """Tasks of the fig4 variance stage (empty when it is not configured)."""
        v = self.config["variance"]
        return list(v["tasks"]) if v["dataset"] is not None else []

    def shards(self, run: AnalyticRun) -> list[tuple[int, int]]:
        """(first image, first σ index) of every shard of ``run``'s store."""
        a, m = self.config["analytic"], self.config["measurements"]
        return [(i, s) for i in range(0, m["n_eval"], a["images_per_shard"])
                for s in range(0, len(m["sigmas"]), a["sigmas_per_shard"])]

    @cached_property
    def shard_jobs(self) -> list[tuple[Shard, ...]]:
        """The estimator shard jobs: every shard of every store in plan order, cut into runs of
        ``analytic.shards_per_job`` consecutive shards (the last run may be shorter).

        One job imports PyTorch and opens its stores once for all its shards: on a laptop a shard
        can hold less than a second of engine work against ~3 s of interpreter start-up. A job is
        named after its first shard (its marker, log and benchmark paths); a store is complete once
        every job holding one of its shards is. Read after :func:`make_plan` only (cached).
        """
        per_job = self.config["analytic"]["shards_per_job"]
        shards = [Shard(run, i, s) for run in self.analytics for i, s in self.shards(run)]
        return [tuple(shards[k : k + per_job]) for k in range(0, len(shards), per_job)]

    @cached_property
    def _shard_job_of(self) -> dict[Shard, tuple[Shard, ...]]:
        return {shard: job for job in self.shard_jobs for shard in job}

    def shard_job(self, wildcards) -> tuple[Shard, ...]:
        """The shard job led by the shard a job's wildcards name (refused if no job starts there)."""
        lead = Shard(self.analytic_from_wildcards(wildcards), int(wildcards.image), int(wildcards.sigma_index))
        job = self._shard_job_of.get(lead)
        if job is None or job[0] != lead:
            raise LemmseInputError(f"no shard job starts at image {lead.image}, σ index {lead.sigma_index} of "
                                   f"{lead.run} (analytic.shards_per_job = "
                                   f"{self.config['analytic']['shards_per_job']})")
        return job

    def shard_jobs_of(self, run: AnalyticRun) -> list[tuple[Shard, ...]]:
        """The shard jobs that write into ``run``'s store, in plan order."""
        return list(dict.fromkeys(self._shard_job_of[Shard(run, i, s)] for i, s in self.shards(run)))


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def make_plan(config: dict) -> Plan:
    """Expand a validated config (see :func:`load_config`) into its jobs."""
    results = Path(config["results"])
    plan = Plan(config=config, results=results, datasets=dataset_info(config),
                preinverses=preinverse_specs(config), estimators=estimator_specs(config))
    for name, study in config["studies"].items():
        comparisons = []
        noises = [TrainingNoise.from_config(item, config["training"]) for item in study["train_sigmas"]]
        for ds in study["datasets"]:
            evals = study["eval_datasets"] or [ds]
            for problem in study["problems"]:
                for patch in study["patches"]:
                    for n in study["train_sizes"]:
                        for ev in evals:
                            for label in study["estimators"]:
                                analytic = AnalyticRun(ds, ev, problem["task"], problem["preinverse"], label, patch, n)
                                plan.analytics.append(analytic)
                                for arch in study["archs"]:
                                    for noise in noises:
                                        run = NetworkRun(ds, problem["task"], problem["preinverse"], arch, patch, n,
                                                         noise)
                                        evaluation = NetworkEval(run, ev)
                                        plan.networks.append(run)
                                        plan.evaluations.append(evaluation)
                                        comparisons.append(Comparison(evaluation, analytic))
        plan.studies[name] = _unique(comparisons)
        plan.comparisons.extend(comparisons)
    mem = config["memorisation"]
    for ds in mem["datasets"]:
        for problem in mem["problems"]:
            for label in BUILTIN_ESTIMATORS:  # MMSE, E-MMSE, LE-MMSE side by side
                if label not in problem.get("estimators", BUILTIN_ESTIMATORS):
                    continue
                patch = mem["patch"] if plan.estimator(label).patched else 0
                plan.memorisation.append(AnalyticRun(ds, ds, problem["task"], problem["preinverse"], label, patch,
                                                     mem["train_size"]))
    plan.analytics.extend(plan.memorisation)
    plan.networks = _unique(plan.networks)
    plan.evaluations = _unique(plan.evaluations)
    plan.analytics = _unique(plan.analytics)
    plan.comparisons = _unique(plan.comparisons)
    plan.memorisation = _unique(plan.memorisation)
    plan.measurement_stores = _unique([(e.eval_dataset, e.run.task) for e in plan.evaluations]
                                      + [(a.eval_dataset, a.task) for a in plan.analytics])
    return plan


def estimate_options(config: dict, run: AnalyticRun) -> dict[str, Any]:
    """Every keyword of :func:`lemmse.estimators.estimate` for ``run`` but the data and σ."""
    estimator = lookup(estimator_specs(config), run.estimator, "estimators")
    options = {"task": run.task, **preinverse_options(config, run.preinverse), **task_options(config, run.task),
               **estimator.options(config["seed"])}
    if estimator.patched:
        options["patch"] = run.patch
    return options


def analytic_attrs(plan: "Plan", run: AnalyticRun) -> dict[str, Any]:
    """Provenance of an estimator store: what was computed, from which data."""
    return {"dataset": run.dataset, "eval_dataset": run.eval_dataset, "task": run.task,
            "preinverse": run.preinverse, "estimator": run.estimator, "patch": run.patch,
            "train_size": run.train_size, "options": estimate_options(plan.config, run),
            "data_store": str(plan.data_store(run.dataset)), "train_images": f"first {run.train_size} of train"}


# ------------------------------------------------------------------------------------------------
# what `snakemake all` runs: jobs per rule and per study, figures covered
# ------------------------------------------------------------------------------------------------

def prepared_datasets(plan: Plan) -> list[str]:
    """The data sets some job of ``all`` reads (the others are prepared only by ``datasets_all``)."""
    used = [r.dataset for r in plan.networks] + [e.eval_dataset for e in plan.evaluations]
    used += [name for a in plan.analytics for name in (a.dataset, a.eval_dataset)]
    if plan.variance_tasks():
        used.append(plan.config["variance"]["dataset"])
    return [name for name in plan.datasets if name in set(used)]


def figure_coverage(plan: Plan) -> dict[str, str | None]:
    """Figure name -> ``None`` when the planned tables cover it, else the reason it is not covered.

    Judged from the planned table rows (key columns only), before any job runs; the same verdict
    the workflow's figure rules are built from.
    """
    from lemmse.figures import coverage
    from lemmse.gather import planned_tables

    metrics, analytic = planned_tables(plan)
    return coverage(metrics, analytic, variance=plan.variance_tasks() != [], config=plan.config)


def rule_jobs(plan: Plan, figures: Iterable[str]) -> dict[str, int]:
    """Jobs per rule of ``snakemake all`` on an empty results folder, in stage order.

    ``figures``: the covered figures (see :func:`figure_coverage`), one job each.
    """
    counts = {"prepare_dataset": len(prepared_datasets(plan)), "measure": len(plan.measurement_stores),
              "train_network": len(plan.networks), "evaluate_network": len(plan.evaluations),
              "analytic_template": len(plan.analytics), "analytic_shard": len(plan.shard_jobs),
              "analytic_finalize": len(plan.analytics), "variance": len(plan.variance_tasks()),
              "gather": 1, "study_table": len(plan.config["studies"]),
              # the claims' extra tables: net-vs-net and pre-inverse pairs, shift-aware memorisation
              "pair_tables": 1, "memorisation_table": 1}
    counts.update({name: 1 for name in figures})
    counts.update(figure_coverage=1, claims=1, all=1)
    return {rule: n for rule, n in counts.items() if n}


def study_jobs(plan: Plan) -> dict[str, dict[str, int]]:
    """Per study (and the memorisation and variance stages): networks, evaluations, estimator
    stores and shards (not shard jobs, which may span studies: :meth:`Plan.shard_jobs`) it needs. A job shared by several studies counts in each of them."""
    out = {}
    for name, comparisons in plan.studies.items():
        analytics = _unique(c.analytic for c in comparisons)
        out[name] = {"train_network": len(_unique(c.evaluation.run for c in comparisons)),
                     "evaluate_network": len(_unique(c.evaluation for c in comparisons)),
                     "analytic stores": len(analytics),
                     "analytic shards": sum(len(plan.shards(a)) for a in analytics)}
    if plan.memorisation:
        out["memorisation"] = {"train_network": 0, "evaluate_network": 0, "analytic stores": len(plan.memorisation),
                               "analytic shards": sum(len(plan.shards(a)) for a in plan.memorisation)}
    if plan.variance_tasks():
        out["variance"] = {"train_network": 0, "evaluate_network": 0, "analytic stores": 0, "analytic shards": 0,
                           "variance": len(plan.variance_tasks())}
    return out
