r"""The workflow's configuration: validated, defaulted and checked before any job is built.

:func:`load_config` checks a config (a YAML file or a dict) against the JSON schema
``lemmse/plan/config.schema.yaml`` — every key described, defaulted, unknown keys refused — and
then the semantics a schema cannot express (odd patch sizes that fit the images, pre-inverses that
fit their task, training sizes the data sets have, fixed training σ on the measurement grid),
raising :class:`~lemmse.errors.LemmseInputError` with the offending key path. No data file is read:
the files of a data set are checked by :func:`check_dataset_files` in the dataset rule, so a config
can be planned before its data sets are on disk.

The config lookups every job needs (:func:`task_options`, :func:`preinverse_options`,
:func:`estimator_options`) resolve labels through :mod:`lemmse.plan.specs`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from lemmse.errors import LemmseInputError
from lemmse.plan.specs import LEMMSE_KINDS, estimator_specs, lookup, preinverse_specs

#: The schema every config is checked against.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

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


def dataset_info(config: dict) -> dict[str, dict]:
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
    info = dataset_info(config)
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


def _check_train_sigmas(config: dict, where: str, items: list) -> None:
    """Each training noise of a study: a range that is one, a fixed σ on the measurement grid (the one
    σ it is evaluated at), no two entries naming the same network."""
    from lemmse.plan.records import TrainingNoise

    seen = {}
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            if item["min"] > item["max"]:
                raise LemmseInputError(f"config key {where}.{i}.min: {item['min']} > max {item['max']}")
            if item.get("sampling") == "log-uniform" and item["min"] <= 0:
                raise LemmseInputError(f"config key {where}.{i}.min: {item['min']} must be > 0 for log-uniform sampling")
        noise = TrainingNoise.from_config(item, config["training"])
        if noise.fixed:
            try:
                noise.evaluated(config["measurements"]["sigmas"])
            except LemmseInputError as err:
                raise LemmseInputError(f"config key {where}.{i}: {err}") from None
        if noise.spec in seen:
            raise LemmseInputError(f"config key {where}.{i}: {item!r} names the same network as entry {seen[noise.spec]} "
                                   f"(training σ {noise.spec})")
        seen[noise.spec] = i


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
    _check_train_sigmas(config, f"{where}.train_sigmas", study["train_sigmas"])
    for label in study["estimators"]:
        if label not in config["estimators"]:
            raise LemmseInputError(f"config key {where}.estimators: unknown label {label!r} "
                                   f"(known: {', '.join(config['estimators'])})")
        if config["estimators"][label]["kind"] not in LEMMSE_KINDS:
            raise LemmseInputError(f"config key {where}.estimators: {label!r} is not an LE-MMSE kind; "
                                   "networks are compared with lemmse or smoothed estimators")


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
