r"""The workflow's configuration as data: validate it, then expand it into the jobs it asks for.

:func:`load_config` checks a config (a YAML file or a dict) against the JSON schema
``workflow/schemas/config.schema.yaml`` — every key described, defaulted, unknown keys refused
— and then the semantics a schema cannot express (odd patch sizes that fit the images, pre-inverses
that fit their task, training sizes the data sets have), raising
:class:`~lemmse.errors.LemmseInputError` with the offending key path before any job is built.
No data file is read: the files of a data set are checked by :func:`check_dataset_files` in the
dataset rule, so a config can be planned before its data sets are on disk.

:func:`make_plan` expands the studies into frozen records — :class:`NetworkRun` (one trained
network), :class:`NetworkEval` (its outputs on one data set's measurements), :class:`AnalyticRun`
(one estimator store) and :class:`Comparison` (a network evaluation paired with an estimator
store, one block of rows of the ``metrics`` table) — each knowing its wildcards, hence its paths
in the results layout (:mod:`lemmse.plan.layout`, the one place a path is spelled). Labels are
resolved once into :mod:`lemmse.plan.specs` (``Plan.preinverses``, ``Plan.estimators``);
``Plan.analytic_keys``/``Plan.metrics_keys`` give a record's table columns.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from lemmse.errors import LemmseInputError
from lemmse.plan.layout import Layout
from lemmse.plan.specs import (BUILTIN_ESTIMATORS, LEMMSE_KINDS, Estimator, PreInverse, estimator_specs, lookup,
                               preinverse_specs)

#: The schema every config is checked against.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

#: Pre-inverse kinds each task admits (B = I always; Aᵀ, A⁺ where A is not I; Tikhonov for blur).
KINDS_BY_TASK = {
    "denoising": ("identity",),
    "inpainting": ("identity", "adjoint", "pinv"),
    "deconvolution": ("identity", "adjoint", "pinv", "tikhonov"),
}


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------

def _validator_filling_defaults(schema: dict):
    """A jsonschema validator that also writes each property's ``default`` into the instance."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema_)

    return jsonschema.validators.extend(base, {"properties": set_defaults})(schema)


def _key_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def validate_schema(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """``config`` with defaults filled in; the first schema violation raises, naming its key."""
    schema = yaml.safe_load(schema_path.read_text())
    config = copy.deepcopy(config)
    validator = _validator_filling_defaults(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise LemmseInputError(f"config key {_key_path(first)}: {first.message}")
    # a second pass: defaults inside objects created by the first pass
    errors = list(validator.iter_errors(config))
    if errors:
        raise LemmseInputError(f"config key {_key_path(errors[0])}: {errors[0].message}")
    return config


def load_config(source: str | Path | Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> dict:
    """Read (if a path), schema-check, default and semantically check a workflow config."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise LemmseInputError(f"config file {path} not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise LemmseInputError(f"config file {path} is not valid YAML: {err}") from err
    else:
        raw = dict(source)
    config = validate_schema(raw, schema_path)
    check_semantics(config)
    return config


def reads_files(source: str) -> bool:
    """Whether the registered data set ``source`` is read from local files (it has a ``root`` key)."""
    from lemmse.data import get_spec

    return "root" in get_spec(source).defaults


def _dataset_info(config: dict) -> dict[str, dict]:
    """Resolved options, channel count and resolution of every configured data set.

    Touches no file: a data set read from local files (FFHQ, CIFAR-10, FashionMNIST) gets only its
    option types checked here; its root, files and sizes are checked by :func:`check_dataset_files`
    in the dataset rule, so a config can be planned (``snakemake -n``, ``lemmse plan``) before any
    data set is fetched. Embedded data sets (no files) get their source's full check.
    """
    from lemmse.data import get_spec, resolve_config

    info = {}
    for name, entry in config["datasets"].items():
        source, options = dataset_source(config, name)
        try:
            resolved = resolve_config(source, options)
            spec = get_spec(source)
            if not reads_files(source):
                spec.check(resolved)  # sizes and resolution against the bundled pool
        except LemmseInputError as err:
            raise LemmseInputError(f"config key datasets.{name}: {err}") from err
        info[name] = {"options": resolved, "channels": spec.channels(resolved),
                      "resolution": int(resolved["resolution"]), "train_size": int(resolved["train_size"]),
                      "test_size": int(resolved["test_size"])}
    return info


def check_dataset_files(config: dict, name: str) -> tuple[str, dict]:
    """The dataset rule's check, before any work: ``(source, options)`` of data set ``name``.

    For a data set read from local files, the configured ``root`` must be set and exist (unless
    ``download: true`` fetches it); then the source's own check runs (sizes against the files,
    readable headers, resolution). Every failure names the config key and the path.
    """
    from lemmse.data import get_spec, resolve_config

    source, options = dataset_source(config, name)
    try:
        resolved = resolve_config(source, options)
    except LemmseInputError as err:
        raise LemmseInputError(f"config key datasets.{name}: {err}") from err
    if reads_files(source) and not resolved.get("download"):
        root = resolved.get("root")
        if root is None:
            raise LemmseInputError(f"config key datasets.{name}.root is not set: {source} is read from local "
                                   "files; point root at them")
        path = Path(root).expanduser()
        if not path.exists():
            raise LemmseInputError(f"config key datasets.{name}.root: {root} does not exist (resolved from "
                                   f"{Path.cwd()}: {path.absolute()}); fetch the {source} files there or set "
                                   f"datasets.{name}.root")
    try:
        get_spec(source).check(resolved)
    except LemmseInputError as err:
        raise LemmseInputError(f"config key datasets.{name}: {err}") from err
    return source, options


def dataset_source(config: dict, name: str) -> tuple[str, dict]:
    """The registered data set behind a config entry and its options.

    An entry's ``source`` key names the registered data set when the entry is an alias (e.g.
    ``ffhq64: {source: ffhq, resolution: 64}``); by default the entry name is the data set.
    """
    options = dict(config["datasets"][name])
    return str(options.pop("source", name)), options


def _check_problem(config: dict, where: str, problem: Mapping[str, str]) -> None:
    label = problem["preinverse"]
    if label not in config["preinverses"]:
        raise LemmseInputError(f"config key {where}.preinverse: unknown label {label!r}; "
                               f"define it under preinverses (known: {', '.join(config['preinverses'])})")
    kind = config["preinverses"][label]["kind"]
    if kind not in KINDS_BY_TASK[problem["task"]]:
        raise LemmseInputError(f"config key {where}: pre-inverse {label!r} ({kind}) does not fit task "
                               f"{problem['task']!r} (allowed: {', '.join(KINDS_BY_TASK[problem['task']])})")


def _check_patch(where: str, patch: int, resolution: int) -> None:
    if patch % 2 == 0:
        raise LemmseInputError(f"config key {where}: patch size {patch} must be odd")
    if patch > resolution:
        raise LemmseInputError(f"config key {where}: patch size {patch} exceeds the {resolution}×{resolution} images")


def check_semantics(config: dict) -> None:
    """Everything the schema cannot say, each failure naming its key; no file is written."""
    info = _dataset_info(config)
    meas = config["measurements"]
    if len(set(meas["sigmas"])) != len(meas["sigmas"]):
        raise LemmseInputError(f"config key measurements.sigmas: repeated values in {meas['sigmas']}")
    for name, d in info.items():
        if meas["n_eval"] > min(d["train_size"], d["test_size"]):
            raise LemmseInputError(f"config key measurements.n_eval: {meas['n_eval']} exceeds the "
                                   f"{min(d['train_size'], d['test_size'])} images of a split of {name!r}")
    for label, pre in config["preinverses"].items():
        if (pre["kind"] == "tikhonov") != ("lam" in pre):
            raise LemmseInputError(f"config key preinverses.{label}.lam: required for kind tikhonov "
                                   "and only there")
    for label, est in config["estimators"].items():
        smoothed = est["kind"] == "smoothed"
        for key in ("smoothing", "samples"):
            if smoothed != (key in est):
                raise LemmseInputError(f"config key estimators.{label}.{key}: required for kind smoothed and only there")
    train = config["training"]
    for ds in train["dataset_model_options"]:
        _require_dataset(info, "training.dataset_model_options", ds)
    if train["steps"] is not None and train["epochs"] is not None:
        raise LemmseInputError(f"config key training: give steps ({train['steps']}) or epochs ({train['epochs']}), "
                               "not both")
    if train["sigma_min"] > train["sigma_max"]:
        raise LemmseInputError(f"config key training.sigma_min: {train['sigma_min']} > training.sigma_max "
                               f"{train['sigma_max']}")
    if train["sigma_sampling"] == "log-uniform" and train["sigma_min"] <= 0:
        raise LemmseInputError(f"config key training.sigma_min: {train['sigma_min']} must be > 0 for "
                               "training.sigma_sampling: log-uniform")
    for name, study in config["studies"].items():
        where = f"studies.{name}"
        _check_study(config, info, where, study)
        _check_trained_on_train_split(meas["n_eval"], f"{where}.train_sizes", study["train_sizes"])
    mem = config["memorisation"]
    for i, problem in enumerate(mem["problems"]):
        _check_problem(config, f"memorisation.problems.{i}", problem)
    for ds in mem["datasets"]:
        _require_dataset(info, "memorisation.datasets", ds)
        _check_patch("memorisation.patch", mem["patch"], info[ds]["resolution"])
        _check_train_size(info, "memorisation.train_size", ds, mem["train_size"])
    ref = config["figures"]["reference"]
    if ref["patch"] is not None and ref["patch"] % 2 == 0:
        raise LemmseInputError(f"config key figures.reference.patch: patch size {ref['patch']} must be odd")
    if ref["dataset"] is not None:
        _require_dataset(info, "figures.reference.dataset", ref["dataset"])
    var = config["variance"]
    if var["dataset"] is not None:
        _require_dataset(info, "variance.dataset", var["dataset"])
        _check_patch("variance.patch", var["patch"], info[var["dataset"]]["resolution"])
        _check_train_size(info, "variance.train_size", var["dataset"], var["train_size"])
        if var["images"] > info[var["dataset"]]["test_size"]:
            raise LemmseInputError(f"config key variance.images: {var['images']} exceeds the test split")


def _check_trained_on_train_split(n_eval: int, where: str, train_sizes: Iterable[int]) -> None:
    """The "train" split measurements (its first ``n_eval`` images) must all be training images of
    every N, or the train/test comparison would score images a network never saw as "train"."""
    small = [n for n in train_sizes if n < n_eval]
    if small:
        raise LemmseInputError(f"config key {where}: N = {min(small)} is below measurements.n_eval = {n_eval}; "
                               f"the train-split images {min(small)}..{n_eval - 1} would not be training images "
                               "(lower n_eval or raise N)")


def _require_dataset(info: dict, where: str, name: str) -> None:
    if name not in info:
        raise LemmseInputError(f"config key {where}: data set {name!r} is not configured under datasets "
                               f"(configured: {', '.join(info)})")


def _check_train_size(info: dict, where: str, dataset: str, size: int) -> None:
    if size > info[dataset]["train_size"]:
        raise LemmseInputError(f"config key {where}: {size} training images requested but {dataset!r} "
                               f"has {info[dataset]['train_size']}")


def _check_study(config: dict, info: dict, where: str, study: dict) -> None:
    for ds in study["datasets"]:
        _require_dataset(info, f"{where}.datasets", ds)
        for ev in study["eval_datasets"]:
            _require_dataset(info, f"{where}.eval_datasets", ev)
            same = (info[ev]["channels"], info[ev]["resolution"]) == (info[ds]["channels"], info[ds]["resolution"])
            if not same:
                raise LemmseInputError(f"config key {where}.eval_datasets: {ev!r} images are not shaped like "
                                       f"{ds!r} images (channels and resolution must match)")
        for p in study["patches"]:
            _check_patch(f"{where}.patches", p, info[ds]["resolution"])
        for n in study["train_sizes"]:
            _check_train_size(info, f"{where}.train_sizes", ds, n)
    for i, problem in enumerate(study["problems"]):
        _check_problem(config, f"{where}.problems.{i}", problem)
    for label in study["estimators"]:
        if label not in config["estimators"]:
            raise LemmseInputError(f"config key {where}.estimators: unknown label {label!r} "
                                   f"(known: {', '.join(config['estimators'])})")
        if config["estimators"][label]["kind"] not in LEMMSE_KINDS:
            raise LemmseInputError(f"config key {where}.estimators: {label!r} is not an LE-MMSE kind; "
                                   "networks are compared with lemmse or smoothed estimators")


# ------------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------------

def sigma_spec(training: Mapping[str, Any]) -> str:
    """``0.05`` for a fixed training σ, ``0-1`` for a range, ``0.005-1log`` for a log-uniform one
    (:attr:`lemmse.training.config.TrainConfig.sigma_spec`)."""
    from lemmse.training.sigma_spec import format_sigma_spec

    return format_sigma_spec(training["sigma_min"], training["sigma_max"], training.get("sigma_sampling", "uniform"))


@dataclass(frozen=True)
class NetworkRun:
    """One trained network."""

    dataset: str
    task: str
    preinverse: str
    arch: str
    patch: int
    train_size: int
    spec: str

    @property
    def wildcards(self) -> dict[str, Any]:
        """Its wildcards in the layout's patterns (:mod:`lemmse.plan.layout`)."""
        return {"dataset": self.dataset, "task": self.task, "preinverse": self.preinverse, "arch": self.arch,
                "patch": self.patch, "train_size": self.train_size, "spec": self.spec}

    def directory(self, results: Path) -> Path:
        return Layout(results).path("network_dir", self)


@dataclass(frozen=True)
class NetworkEval:
    """A network's outputs on the measurements of ``eval_dataset``."""

    run: NetworkRun
    eval_dataset: str

    @property
    def wildcards(self) -> dict[str, Any]:
        return {**self.run.wildcards, "eval_dataset": self.eval_dataset}

    def store(self, results: Path) -> Path:
        return Layout(results).path("evaluation", self)


@dataclass(frozen=True)
class AnalyticRun:
    """One analytic estimator store (all splits, images and σ of the measurement grid)."""

    dataset: str
    eval_dataset: str
    task: str
    preinverse: str
    estimator: str
    patch: int  # 0 for estimators without a patch (mmse, emmse)
    train_size: int

    @property
    def wildcards(self) -> dict[str, Any]:
        """Its wildcards in the layout's patterns (:mod:`lemmse.plan.layout`)."""
        return {"dataset": self.dataset, "eval_dataset": self.eval_dataset, "task": self.task,
                "preinverse": self.preinverse, "estimator": self.estimator, "patch": self.patch,
                "train_size": self.train_size}

    def stem(self, results: Path) -> Path:
        return Layout(results).path("analytic_stem", self)

    def store(self, results: Path) -> Path:
        return Layout(results).path("analytic_store", self)

    def complete_marker(self, results: Path) -> Path:
        return Layout(results).path("analytic_complete", self)

    def shard_marker(self, results: Path, image: int, sigma_index: int) -> Path:
        return Layout(results).path("analytic_shard", self, image=image, sigma_index=sigma_index)


@dataclass(frozen=True)
class Comparison:
    """A network evaluation and the estimator store it is compared with (same y)."""

    evaluation: NetworkEval
    analytic: AnalyticRun


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
        run = NetworkRun(wildcards.dataset, wildcards.task, wildcards.preinverse, wildcards.arch,
                         int(wildcards.patch), int(wildcards.train_size), wildcards.spec)
        if run not in self.networks:
            raise LemmseInputError(f"the config asks for no network {run}")
        return run

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
                "eval_dataset": comparison.evaluation.eval_dataset, "arch": net.arch, "train_sigma": net.spec}

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


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def make_plan(config: dict) -> Plan:
    """Expand a validated config (see :func:`load_config`) into its jobs."""
    results = Path(config["results"])
    plan = Plan(config=config, results=results, datasets=_dataset_info(config),
                preinverses=preinverse_specs(config), estimators=estimator_specs(config))
    spec = sigma_spec(config["training"])
    for name, study in config["studies"].items():
        comparisons = []
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
                                    run = NetworkRun(ds, problem["task"], problem["preinverse"], arch, patch, n, spec)
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


#: Steps of a network when the config gives neither ``training.steps`` nor ``training.epochs``.
DEFAULT_STEPS = 1000


def arch_training(training: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """The ``training`` settings of ``arch``: the shared ones with ``training.arch_budget[arch]`` on top.

    A budget in steps replaces shared epochs and vice versa, so each architecture has exactly one.
    """
    budget = dict(training.get("arch_budget", {}).get(arch, {}))
    merged = {**training, **budget}
    if "steps" in budget:
        merged["epochs"] = None
    if "epochs" in budget:
        merged["steps"] = None
    return merged


def training_steps(training: Mapping[str, Any], train_size: int) -> int:
    """Optimiser steps of a network trained on ``train_size`` images.

    ``training.steps`` if given, else ``⌈epochs · N / batch_size⌉`` (at least 1): the paper trains
    for a number of epochs, so its N = 100 networks take far fewer steps than its N = 50000 ones.
    """
    if training.get("epochs") is not None:
        return max(1, math.ceil(training["epochs"] * train_size / training["batch_size"]))
    return int(training["steps"]) if training.get("steps") is not None else DEFAULT_STEPS


def model_options(training: Mapping[str, Any], dataset: str, arch: str) -> dict[str, Any]:
    """Option overrides of ``arch`` on ``dataset``: ``training.model_options[arch]``, then
    ``training.dataset_model_options[dataset][arch]`` (e.g. the paper's wider UNet at 64×64)."""
    options = dict(training["model_options"].get(arch, {}))
    options.update(training.get("dataset_model_options", {}).get(dataset, {}).get(arch, {}))
    return options


def training_config(config: dict, run: "NetworkRun"):
    """The :class:`lemmse.training.config.TrainConfig` of one network of the sweep."""
    from lemmse.training.config import TrainConfig

    t = arch_training(config["training"], run.arch)
    pre = preinverse_options(config, run.preinverse)
    return TrainConfig(task=run.task, preinverse=pre["preinverse"], lam=pre["lam"], **task_options(config, run.task),
                       arch=run.arch, patch=run.patch, preset=t["preset"],
                       model_options=model_options(t, run.dataset, run.arch),
                       sigma_min=t["sigma_min"], sigma_max=t["sigma_max"], sigma_sampling=t["sigma_sampling"],
                       steps=training_steps(t, run.train_size),
                       batch_size=t["batch_size"], lr=t["lr"], lr_min=t["lr_min"], weight_decay=t["weight_decay"],
                       grad_clip=t["grad_clip"], ema_decay=t["ema_decay"], ema_start=t["ema_start"],
                       ema_every=t["ema_every"], checkpoint_every=t["checkpoint_every"], seed=config["seed"])


def estimator_options(config: dict, label: str) -> dict[str, Any]:
    """Keyword arguments of :func:`lemmse.estimators.estimate` for an estimator label."""
    return lookup(estimator_specs(config), label, "estimators").options(config["seed"])


def preinverse_options(config: dict, label: str) -> dict[str, Any]:
    """``preinverse`` and ``lam`` for a pre-inverse label."""
    return lookup(preinverse_specs(config), label, "preinverses").options()


def task_options(config: dict, task: str) -> dict[str, Any]:
    """Operator parameters (``hole``, ``blur_std``) of ``task``."""
    return {k: v for k, v in config["tasks"][task].items() if v is not None}


def smoothing_of(config: dict, label: str) -> float:
    """The smoothing s of an estimator label (0 unless smoothed)."""
    return lookup(estimator_specs(config), label, "estimators").smoothing


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
    shards = sum(len(plan.shards(a)) for a in plan.analytics)
    counts = {"prepare_dataset": len(prepared_datasets(plan)), "measure": len(plan.measurement_stores),
              "train_network": len(plan.networks), "evaluate_network": len(plan.evaluations),
              "analytic_template": len(plan.analytics), "analytic_shard": shards,
              "analytic_finalize": len(plan.analytics), "variance": len(plan.variance_tasks()),
              "gather": 1, "study_table": len(plan.config["studies"]),
              # the claims' extra tables: net-vs-net and pre-inverse pairs, shift-aware memorisation
              "pair_tables": 1, "memorisation_table": 1}
    counts.update({name: 1 for name in figures})
    counts.update(figure_coverage=1, claims=1, all=1)
    return {rule: n for rule, n in counts.items() if n}


def study_jobs(plan: Plan) -> dict[str, dict[str, int]]:
    """Per study (and the memorisation and variance stages): networks, evaluations, estimator
    stores and shards it needs. A job shared by several studies counts in each of them."""
    out = {}
    for name, comparisons in plan.studies.items():
        analytics = _unique(c.analytic for c in comparisons)
        out[name] = {"train_network": len(_unique(c.evaluation.run for c in comparisons)),
                     "evaluate_network": len(_unique(c.evaluation for c in comparisons)),
                     "analytic stores": len(analytics),
                     "analytic_shard": sum(len(plan.shards(a)) for a in analytics)}
    if plan.memorisation:
        out["memorisation"] = {"train_network": 0, "evaluate_network": 0, "analytic stores": len(plan.memorisation),
                               "analytic_shard": sum(len(plan.shards(a)) for a in plan.memorisation)}
    if plan.variance_tasks():
        out["variance"] = {"train_network": 0, "evaluate_network": 0, "analytic stores": 0, "analytic_shard": 0,
                           "variance": len(plan.variance_tasks())}
    return out
