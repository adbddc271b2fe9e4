"""The workflow config: schema (descriptions, defaults, unknown keys) and semantic checks.

Every bad config fails in :func:`lemmse.plan.config.load_config` with the offending key named, before
any job exists; the shipped configs validate and plan, the paper's one with none of its data
sets on disk (their files are checked by the dataset rule, :func:`check_dataset_files`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lemmse.errors import LemmseInputError
from lemmse.plan.config import SCHEMA_PATH, check_dataset_files, load_config
from lemmse.plan.sweep import make_plan

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "test_tiny.yaml"


@pytest.fixture(scope="module")
def tiny() -> dict:
    return yaml.safe_load(TINY.read_text())


def _walk(schema: dict, where: str = ""):
    """Every property schema (with its key path) of the config schema."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{where}{name}", sub
        yield from _walk(sub, f"{where}{name}.")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{where}*.")


def test_every_schema_key_has_a_description_and_objects_refuse_unknown_keys():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema["additionalProperties"] is False
    for key, sub in _walk(schema):
        if "$ref" in sub:
            continue
        assert sub.get("description"), f"schema key {key} has no description"
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, f"schema object {key} accepts unknown keys"


@pytest.mark.parametrize("name", ["config.yaml", "test_tiny.yaml"])
def test_shipped_configs_validate_and_plan(name):
    config = load_config(REPO / "config" / name)
    plan = make_plan(config)
    assert plan.networks and plan.analytics and plan.comparisons
    assert set(plan.studies) == set(config["studies"])
    # defaults were filled in
    assert config["analytic"]["max_memory_mb"] > 0 and "checkpoint_every" in config["training"]


def test_default_config_has_every_ablation_of_the_issue():
    config = load_config(REPO / "config" / "config.yaml")
    assert {"noise", "patch_size", "dataset_size", "preinverse", "ood", "smoothing"} <= set(config["studies"])
    kinds = {config["preinverses"][p["preinverse"]]["kind"] for p in config["studies"]["preinverse"]["problems"]}
    assert "tikhonov" in kinds


def test_paper_config_plans_without_its_data_files(tmp_path, monkeypatch):
    """No data set on disk: the config still validates and plans (sizes from the options)."""
    monkeypatch.chdir(tmp_path)  # the relative roots data/... do not exist here
    config = load_config(REPO / "config" / "paper.yaml")
    plan = make_plan(config)
    assert plan.datasets["ffhq"]["resolution"] == 32 and plan.datasets["ffhq64"]["resolution"] == 64
    assert plan.datasets["cifar10"]["channels"] == 3 and plan.datasets["fashion_mnist"]["channels"] == 1
    assert plan.datasets["fashion_mnist"]["resolution"] == 28  # native, as the authors
    # noise 3 sets × 5 problems × 3 archs = 45, patch size 3 × 2 problems × 3 more P = 18, dataset size
    # 2 × 3 more N = 6, Tikhonov 3, ffhq64 5 problems × 3 archs = 15; estimator stores: 58 of the studies and
    # Fig. 2, and the 3 E-MMSE-only ones of Fig. 3 (deconvolution B = A⁺, inpainting B = I and B = A⁺)
    assert len(plan.networks) == 87 and len(plan.analytics) == 61
    assert config["measurements"]["n_eval"] == 100 and config["tasks"]["inpainting"]["hole"] == 15
    assert config["training"]["epochs"] == 600 and config["training"]["steps"] is None


@pytest.mark.parametrize("entry,key,path", [
    ({"root": "/nonexistent/fmnist"}, "datasets.fashion_mnist.root", "/nonexistent/fmnist"),
    ({}, "datasets.fashion_mnist.root", None),
], ids=["missing-root", "unset-root"])
def test_dataset_rule_check_names_the_key_and_the_path(tiny, entry, key, path):
    config = _broken(tiny, lambda c: c["datasets"].update(fashion_mnist=entry))
    config = load_config(config)  # planning works: files are not looked at
    with pytest.raises(LemmseInputError) as err:
        check_dataset_files(config, "fashion_mnist")
    assert key in str(err.value) and (path is None or path in str(err.value)), err.value


def test_dataset_rule_check_runs_the_source_check_on_existing_files(tiny, tmp_path):
    """The root exists but holds no idx files: the source's own check fails, naming the data set."""
    config = load_config(_broken(tiny, lambda c: c["datasets"].update(fashion_mnist={"root": str(tmp_path)})))
    with pytest.raises(LemmseInputError, match=r"config key datasets\.fashion_mnist: "):
        check_dataset_files(config, "fashion_mnist")
    assert check_dataset_files(config, "digits") == ("digits", tiny["datasets"]["digits"])


def _broken(tiny: dict, edit) -> dict:
    config = copy.deepcopy(tiny)
    edit(config)
    return config


BAD = {
    "unknown top-level key": (lambda c: c.update(sigma=0.1), "(top level)"),
    "unknown nested key": (lambda c: c["training"].update(stepz=3), "training"),
    "misspelled architecture": (lambda c: c["studies"]["noise"].update(archs=["unett"]), "studies.noise.archs.0"),
    "sigma zero": (lambda c: c["measurements"].update(sigmas=[0.0, 0.1]), "measurements.sigmas.0"),
    "sigma negative": (lambda c: c["measurements"].update(sigmas=[0.1, -1.0]), "measurements.sigmas.1"),
    "even patch": (lambda c: c["studies"]["patch_size"].update(patches=[3, 4]), "studies.patch_size.patches"),
    "patch larger than image": (lambda c: c["studies"]["patch_size"].update(patches=[17]), "studies.patch_size.patches"),
    "bad dataset option type": (lambda c: c["datasets"].update(fashion_mnist={"root": "x", "train_size": "many"}),
                                "datasets.fashion_mnist"),
    "unknown dataset": (lambda c: c["datasets"].update(mnist={}), "datasets.mnist"),
    "study on unconfigured dataset": (lambda c: c["studies"]["noise"].update(datasets=["photos"]),
                                      "studies.noise.datasets"),
    "pre-inverse label undefined": (lambda c: c["studies"]["noise"]["problems"].append(
        {"task": "inpainting", "preinverse": "tik"}), "studies.noise.problems.2.preinverse"),
    "pre-inverse not fitting task": (lambda c: c["studies"]["noise"]["problems"].append(
        {"task": "denoising", "preinverse": "pinv"}), "studies.noise.problems.2"),
    "tikhonov without lam": (lambda c: c["preinverses"].update(tik={"kind": "tikhonov"}), "preinverses.tik.lam"),
    "smoothed without smoothing": (lambda c: c["estimators"].update(s2={"kind": "smoothed"}),
                                   "estimators.s2.smoothing"),
    "train size above the split": (lambda c: c["studies"]["noise"].update(train_sizes=[61]),
                                   "studies.noise.train_sizes"),
    "sigma range reversed": (lambda c: c["training"].update(sigma_min=0.5, sigma_max=0.2), "training.sigma_min"),
    "n_eval above the split": (lambda c: c["measurements"].update(n_eval=9), "measurements.n_eval"),
    "n_eval above a study's N": (lambda c: c["studies"]["noise"].update(train_sizes=[1]), "studies.noise.train_sizes"),
    "steps and epochs": (lambda c: c["training"].update(steps=10, epochs=2), "training"),
    "log-uniform from zero": (lambda c: c["training"].update(sigma_min=0.0, sigma_sampling="log-uniform"),
                              "training.sigma_min"),
    "unknown sigma sampling": (lambda c: c["training"].update(sigma_sampling="gamma"), "training.sigma_sampling"),
    "budget of an unknown arch": (lambda c: c["training"].update(arch_budget={"unett": {"steps": 5}}),
                                  "training.arch_budget"),
    "unknown budget key": (lambda c: c["training"].update(arch_budget={"unet": {"lr": 0.1}}),
                           "training.arch_budget.unet"),
    "eval set of another shape": (lambda c: c["datasets"].update(faces={"resolution": 12}), "studies.ood.eval_datasets"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_config_fails_naming_the_key(tiny, case):
    edit, key = BAD[case]
    with pytest.raises(LemmseInputError) as err:
        load_config(_broken(tiny, edit))
    assert key in str(err.value), f"{case}: message does not name {key}: {err.value}"


def test_plan_records_are_deduplicated_and_paths_are_structured(tiny):
    plan = make_plan(load_config(tiny))
    assert len(set(plan.networks)) == len(plan.networks)
    run = next(r for r in plan.networks if r.arch == "resnet" and r.task == "denoising")
    assert run.directory("results").as_posix() == "results/models/digits/denoising/identity/resnet/P3/N40/sigma0-1"
    ood = [c for c in plan.studies["ood"]]
    assert {c.evaluation.eval_dataset for c in ood} == {"faces"}
    store = ood[0].analytic.store("results").as_posix()
    assert store == "results/analytic/digits/denoising/identity/lemmse/P3/N40/faces.zarr"
    # shards tile the (image, sigma) grid of every store
    for a in plan.analytics:
        assert plan.shards(a) == [(0, 0), (0, 1)]


def test_epochs_set_each_networks_steps_from_its_training_set_size():
    """steps = ceil(epochs · N / batch): the paper's dataset-size study trains small N for fewer steps."""
    from lemmse.plan.training import DEFAULT_STEPS, training_steps

    assert training_steps({"epochs": 600, "batch_size": 256, "steps": None}, 100) == 235  # 600·100/256 = 234.4
    assert training_steps({"epochs": 600, "batch_size": 256, "steps": None}, 50000) == 117188
    assert training_steps({"epochs": 0.001, "batch_size": 256, "steps": None}, 10) == 1
    assert training_steps({"epochs": None, "batch_size": 32, "steps": 77}, 10**6) == 77
    assert training_steps({"epochs": None, "batch_size": 32, "steps": None}, 5) == DEFAULT_STEPS


def test_training_config_carries_the_configured_budget(tiny):
    from lemmse.plan.training import training_config

    config = copy.deepcopy(tiny)
    config["training"].update(steps=None, epochs=4, weight_decay=1e-4, ema_every=3,
                              sigma_min=0.01, sigma_sampling="log-uniform")
    config = load_config(config)
    from lemmse.plan.records import NetworkRun, TrainingNoise

    tc = training_config(config, NetworkRun("digits", "denoising", "identity", "resnet", 3, 40, TrainingNoise(0.01, 1.0, "log-uniform")))
    assert (tc.steps, tc.weight_decay, tc.ema_every, tc.sigma_sampling) == (
        -(-4 * 40 // config["training"]["batch_size"]), 1e-4, 3, "log-uniform")
    assert tc.sigma_spec == "0.01-1log"


def test_arch_budget_replaces_the_shared_budget_of_its_architecture_only(tiny):
    """training.arch_budget[arch]: its steps or epochs (one replaces the other) and ema_start."""
    from lemmse.rules import config_label
    from lemmse.plan.records import NetworkRun, TrainingNoise
    from lemmse.plan.training import training_config

    config = copy.deepcopy(tiny)
    config["training"].update(steps=None, epochs=4, ema_start=3,
                              arch_budget={"unet": {"steps": 11, "ema_start": 5}, "patchmlp": {"epochs": 2}})
    config = load_config(config)
    run = {arch: NetworkRun("digits", "denoising", "identity", arch, 3, 40, TrainingNoise(0.0, 1.0)) for arch in ("unet", "resnet",
                                                                                                 "patchmlp")}
    batch = config["training"]["batch_size"]
    unet, resnet, mlp = (training_config(config, run[a]) for a in ("unet", "resnet", "patchmlp"))
    assert (unet.steps, unet.ema_start) == (11, 5)  # steps replace the shared epochs
    assert (resnet.steps, resnet.ema_start) == (-(-4 * 40 // batch), 3)  # untouched: the shared budget
    assert (mlp.steps, mlp.ema_start) == (-(-2 * 40 // batch), 3)  # its own epochs, the shared ema_start
    label = config_label(make_plan(config))
    assert "4 epochs, unet: 11 training steps, patchmlp: 2 epochs" in label


def test_diagnostics_only_for_stores_a_figure_or_claim_reads():
    """Plan.wants_diagnostics on the default config: in-distribution LE-MMSE study stores only."""
    plan = make_plan(load_config(REPO / "config" / "config.yaml"))
    wanted = {a for a in plan.analytics if plan.wants_diagnostics(a)}
    study_stores = {c.analytic for c in plan.comparisons}
    assert wanted == {a for a in study_stores if plan.kind(a) == "lemmse" and a.eval_dataset == a.dataset}
    assert wanted, "the default config must compute diagnostics somewhere (Fig. 6, 17, 20-23)"
    kinds = {plan.kind(a) for a in plan.analytics if not plan.wants_diagnostics(a)}
    assert {"mmse", "emmse", "smoothed"} <= kinds  # never for these estimators
    ood = [a for a in plan.analytics if a.eval_dataset != a.dataset]
    assert ood and not any(plan.wants_diagnostics(a) for a in ood)
    memo_only = [a for a in plan.memorisation if plan.kind(a) == "lemmse" and a not in study_stores]
    assert memo_only and not any(plan.wants_diagnostics(a) for a in memo_only)
    # the mass pass only at the figures' reference P = 5, N = 300 (Fig. 20-22 and the mass claims)
    mass = {a for a in plan.analytics if plan.wants_mass(a)}
    assert mass == {a for a in wanted if (a.patch, a.train_size) == (5, 300)}
    assert {(a.patch, a.train_size) for a in wanted - mass} == {(3, 300), (7, 300), (5, 30), (5, 100)}


def test_memorisation_problems_compute_the_estimators_they_list():
    """Fig. 2's problems get MMSE, E-MMSE and LE-MMSE (the default); Fig. 3's list the E-MMSE alone."""
    plan = make_plan(load_config(REPO / "config" / "config.yaml"))
    got = {(a.task, a.preinverse): set() for a in plan.memorisation}
    for a in plan.memorisation:
        got[a.task, a.preinverse].add((plan.kind(a), a.patch, a.train_size))
    both = {("mmse", 0, 100), ("emmse", 0, 100), ("lemmse", 5, 100)}
    assert got == {("denoising", "identity"): both, ("deconvolution", "identity"): both,
                   ("deconvolution", "pinv"): {("emmse", 0, 100)}, ("inpainting", "identity"): {("emmse", 0, 100)},
                   ("inpainting", "pinv"): {("emmse", 0, 100)}}
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["memorisation"]["problems"][0]["estimators"] = ["smoothed"]
    with pytest.raises(LemmseInputError, match=r"memorisation\.problems\.0\.estimators"):
        load_config(raw)


def test_dataset_model_options_override_the_architecture_options(tiny):
    """The paper's 64×64 UNet is wider: training.dataset_model_options[dataset][arch] wins there only."""
    from lemmse.plan.records import NetworkRun, TrainingNoise
    from lemmse.plan.training import training_config

    config = copy.deepcopy(tiny)
    config["training"]["model_options"] = {"unet": {"channels": [8, 16], "norm_groups": 1}}
    config["training"]["dataset_model_options"] = {"faces": {"unet": {"channels": [16, 32]}}}
    config = load_config(config)
    faces = training_config(config, NetworkRun("faces", "denoising", "identity", "unet", 3, 8, TrainingNoise(0.0, 1.0)))
    digits = training_config(config, NetworkRun("digits", "denoising", "identity", "unet", 3, 40, TrainingNoise(0.0, 1.0)))
    assert faces.model_options == {"channels": [16, 32], "norm_groups": 1}
    assert digits.model_options == {"channels": [8, 16], "norm_groups": 1}


def test_planning_a_job_does_not_import_torch_and_lazy_exports_resolve():
    """Every workflow job plans its paths; one that runs no network must not pay PyTorch's import."""
    import subprocess
    import sys

    code = ("import sys; from lemmse.plan import load_config, make_plan; "
            "make_plan(load_config('config/config.yaml')); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
    import lemmse.data
    import lemmse.training

    for package in (lemmse.data, lemmse.training):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
        assert set(package.__all__) <= set(dir(package))
