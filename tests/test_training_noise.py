"""Training σ as a sweep axis: a study's ``train_sigmas`` (σ-conditioned ranges, fixed σ), its
validation, the records and table rows it plans, and the job records the rules hand their jobs."""
from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from lemmse.errors import LemmseInputError
from lemmse.gather import planned_tables
from lemmse.plan import jobs
from lemmse.plan.config import load_config
from lemmse.plan.records import TrainingNoise
from lemmse.plan.sweep import make_plan
from lemmse.plan.training import training_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict:
    """The tiny config (σ grid 0.05, 0.5) with one study training a range and a fixed σ = 0.5."""
    config = yaml.safe_load((REPO / "config" / "test_tiny.yaml").read_text())
    config["studies"] = {"noise": {"datasets": ["digits"], "problems": [{"task": "denoising", "preinverse": "identity"}],
                                   "archs": ["resnet"], "patches": [3], "train_sizes": [40],
                                   "train_sigmas": ["range", 0.5, {"min": 0.1, "max": 0.6, "sampling": "log-uniform"}]}}
    return config


def test_training_noise_entries_and_their_specs():
    training = {"sigma_min": 0.005, "sigma_max": 1.0, "sigma_sampling": "log-uniform"}
    assert TrainingNoise.from_config("range", training) == TrainingNoise(0.005, 1.0, "log-uniform")
    assert TrainingNoise.from_config("range", training).spec == "0.005-1log"
    fixed = TrainingNoise.from_config(0.2, training)
    assert fixed.fixed and fixed.spec == "0.2" and fixed.sampling == "uniform"
    assert TrainingNoise.from_config({"min": 0, "max": 0.5}, training).spec == "0-0.5"
    assert fixed.evaluated([0.01, 0.2, 0.8]) == [0.2]
    assert TrainingNoise(0.0, 1.0).evaluated([0.01, 0.2]) == [0.01, 0.2]
    with pytest.raises(LemmseInputError, match="training σ 0.3 is not on the measurement grid"):
        TrainingNoise(0.3, 0.3).evaluated([0.01, 0.2])


def test_a_study_trains_one_network_per_training_noise(raw):
    plan = make_plan(load_config(raw))
    specs = [n.spec for n in plan.networks]
    assert specs == ["0-1", "0.5", "0.1-0.6log"]
    fixed = next(n for n in plan.networks if n.noise.fixed)
    tc = training_config(plan.config, fixed)
    assert tc.sigma_min == tc.sigma_max == 0.5 and tc.sigma_spec == "0.5"
    ranged = training_config(plan.config, plan.networks[2])
    assert (ranged.sigma_min, ranged.sigma_max, ranged.sigma_sampling) == (0.1, 0.6, "log-uniform")
    # the fixed network is compared at its own σ only; the others at every σ of the grid
    metrics, _ = planned_tables(plan)
    rows = metrics.groupby("train_sigma")["sigma"].unique()
    assert list(rows["0.5"]) == [0.5] and sorted(rows["0-1"]) == [0.05, 0.5] and sorted(rows["0.1-0.6log"]) == [0.05, 0.5]
    fixed_rows = metrics[metrics["train_sigma"] == "0.5"]
    assert (fixed_rows["train_sigma_min"] == 0.5).all() and (fixed_rows["train_sigma_max"] == 0.5).all()
    # one estimator store serves all three
    assert len({c.analytic for c in plan.studies["noise"]}) == 1 and len(plan.studies["noise"]) == 3


@pytest.mark.parametrize("entries,match", [
    ([0.2], r"studies\.noise\.train_sigmas\.0: training σ 0.2 is not on the measurement grid"),
    (["range", {"min": 0.0, "max": 1.0}], r"studies\.noise\.train_sigmas\.1: .* same network as entry 0"),
    ([{"min": 0.6, "max": 0.1}], r"studies\.noise\.train_sigmas\.0\.min: 0.6 > max 0.1"),
    ([{"min": 0.0, "max": 1.0, "sampling": "log-uniform"}], r"train_sigmas\.0\.min: 0.0 must be > 0"),
    (["sometimes"], r"studies\.noise\.train_sigmas\.0"),
])
def test_bad_training_noise_is_refused_naming_the_key(raw, entries, match):
    config = copy.deepcopy(raw)
    config["studies"]["noise"]["train_sigmas"] = entries
    with pytest.raises(LemmseInputError, match=match):
        load_config(config)


def _wildcards(record, **extra) -> SimpleNamespace:
    return SimpleNamespace(**{k: str(v) for k, v in {**record.wildcards, **extra}.items()})


def test_job_records_are_plain_data_the_job_needs(raw):
    """What the rules hand their jobs (``params: job=``): plain data Snakemake can record (so a changed
    setting reruns its job), and exactly the values the plan resolves."""
    plan = make_plan(load_config(raw))
    fixed = next(n for n in plan.networks if n.noise.fixed)
    train = jobs.train_network(plan, _wildcards(fixed))
    assert train["train_size"] == 40 and train["config"]["sigma_min"] == train["config"]["sigma_max"] == 0.5
    assert jobs.evaluate_network(plan, _wildcards(fixed, eval_dataset="digits")) == {"sigmas": [0.5]}
    assert jobs.evaluate_network(plan, _wildcards(plan.networks[0], eval_dataset="digits")) == {"sigmas": None}
    run = plan.analytics[0]
    shard = jobs.analytic_shard(plan, _wildcards(run, image=0, sigma_index=0))
    assert shard["max_memory"] == 256 * 2**20
    assert [(s["store"], s["first_image"], s["first_sigma"]) for s in shard["shards"]] == [
        (str(sh.run.store(plan.results)), sh.image, sh.sigma_index) for sh in plan.shard_jobs[0]]
    first = shard["shards"][0]
    assert first["train_size"] == 40 and first["data"] == str(plan.data_store(run.dataset))
    assert first["measurements"] == str(plan.measurement_store(run.eval_dataset, run.task))
    assert first["estimate_options"]["patch"] == 3
    template = jobs.analytic_template(plan, _wildcards(run))
    assert template["diagnostics"] is True and template["images_per_shard"] == 2
    measure = jobs.measure(plan, SimpleNamespace(dataset="digits", task="inpainting"))
    assert measure == {"task": "inpainting", "sigmas": [0.05, 0.5], "n_eval": 2, "seed": 0, "image_chunk": 2, "hole": 7}
    dataset = jobs.prepare_dataset(plan, SimpleNamespace(dataset="digits"))
    assert dataset["config"]["datasets"]["digits"]["train_size"] == 60
    for record in (train, shard, template, measure, dataset):
        assert _plain(record), record
    with pytest.raises(LemmseInputError, match="asks for no network"):
        jobs.train_network(plan, _wildcards(fixed, spec="0.7"))


def _plain(value) -> bool:
    """Only the types Snakemake records as parameters (repr-able builtins)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic)
