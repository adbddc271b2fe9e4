r"""What each rule hands its job: the job's record, resolved in the Snakemake process, as ``params:``.

The plan is built once, where Snakemake builds the DAG (``workflow/rules/common.smk``); every rule
passes its job the part of it that job needs, so no job rebuilds the plan from the config. Each
function here takes the plan and the job's wildcards and returns plain data (dicts, lists,
numbers, strings): Snakemake records it with the job (``--rerun-triggers params``), so a change of a
job's settings reruns that job and no other. Where a job calls one library function, the dict is
that function's keyword arguments but the paths, which come from ``input:``/``output:``.

The aggregating jobs (gather, the study tables, pairs, memorisation, figures, claims) read every
record of the plan and receive the :class:`~lemmse.plan.sweep.Plan` object itself (not tracked as
a parameter: their inputs are every store, so any change of the plan reaches them as an input).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from lemmse.plan.config import task_options
from lemmse.plan.sweep import Plan, analytic_attrs, estimate_options
from lemmse.plan.training import training_config


def prepare_dataset(plan: Plan, wildcards) -> dict[str, Any]:
    """The data set's config entry (the dataset rule checks its files: :func:`~lemmse.plan.config.check_dataset_files`)."""
    name = wildcards.dataset
    return {"dataset": name, "config": {"datasets": {name: dict(plan.config["datasets"][name])}}}


def measure(plan: Plan, wildcards) -> dict[str, Any]:
    """Keyword arguments of :func:`lemmse.data.build_measurements` for one data set and task."""
    m, task = plan.config["measurements"], wildcards.task
    return {"task": task, "sigmas": list(m["sigmas"]), "n_eval": m["n_eval"], "seed": plan.config["seed"],
            "image_chunk": m["image_chunk"], **task_options(plan.config, task)}


def train_network(plan: Plan, wildcards) -> dict[str, Any]:
    """The network's :class:`~lemmse.training.config.TrainConfig` (as a dict) and its training-set size."""
    run = plan.network_from_wildcards(wildcards)
    return {"config": dataclasses.asdict(training_config(plan.config, run)), "train_size": run.train_size}


def evaluate_network(plan: Plan, wildcards) -> dict[str, Any]:
    """The σ the network is evaluated at (``None``: every σ of the grid; a fixed-σ network: its own)."""
    run = plan.network_from_wildcards(wildcards)
    return {"sigmas": None if not run.noise.fixed else run.noise.evaluated(plan.sigmas())}


def analytic_template(plan: Plan, wildcards) -> dict[str, Any]:
    """Keyword arguments of :func:`lemmse.analytic.create_store` (its ``store`` path included)."""
    run = plan.analytic_from_wildcards(wildcards)
    a = plan.config["analytic"]
    return {"store": str(run.store(plan.results)), "images_per_shard": a["images_per_shard"],
            "sigmas_per_shard": a["sigmas_per_shard"], "diagnostics": plan.wants_diagnostics(run),
            "mass": plan.wants_mass(run), "attrs": analytic_attrs(plan, run)}


def analytic_shard(plan: Plan, wildcards) -> dict[str, Any]:
    """The shards of one shard job (:meth:`~lemmse.plan.sweep.Plan.shard_job`), in order, and the memory
    bound: per shard the keyword arguments of :func:`lemmse.analytic.compute_shard` (``store``,
    ``measurements``, ``first_image``, ``first_sigma``, ``estimate_options``) and its training set
    (``data``, ``train_size``). The paths are here, not matched against ``input:``, because one job's
    shards may read several stores."""
    shards = [{"store": str(sh.run.store(plan.results)), "measurements": str(plan.measurement_store(
                   sh.run.eval_dataset, sh.run.task)), "data": str(plan.data_store(sh.run.dataset)),
               "train_size": sh.run.train_size, "first_image": sh.image, "first_sigma": sh.sigma_index,
               "estimate_options": estimate_options(plan.config, sh.run)} for sh in plan.shard_job(wildcards)]
    return {"shards": shards, "max_memory": plan.config["analytic"]["max_memory_mb"] * 2**20}


def analytic_finalize(plan: Plan, wildcards) -> dict[str, Any]:
    return {"store": str(plan.analytic_from_wildcards(wildcards).store(plan.results))}


def variance(plan: Plan, wildcards) -> dict[str, Any]:
    """Keyword arguments of :func:`lemmse.figures.variance.compute_variance` for one task."""
    v, task = plan.config["variance"], wildcards.task
    return {"task": task, "sigma": v["sigma"], "draws": v["draws"], "seed": plan.config["seed"], "patch": v["patch"],
            "train_size": v["train_size"], "n_images": v["images"], **task_options(plan.config, task)}
