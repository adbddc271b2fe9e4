"""The cost model (lemmse.cost): work counted per job against hand counts, FLOPs of the networks
against an independent count, time = start-up + work / rate, the rates file, benchmark reading
and the ``lemmse plan --cost`` output. Timing itself is checked against a real run in
tests/test_workflow.py (test_cost_model_against_the_tiny_run_benchmarks).
"""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from lemmse.cli.main import main
from lemmse.cost import (GPU_RULES, PROFILES, EstimatorWork, Rates, estimator_work, load_rates, model_flops,
                         predict, read_benchmarks, write_rates)
from lemmse.errors import LemmseInputError
from lemmse.models.registry import build_model, resolve_options
from lemmse.plan.config import load_config
from lemmse.plan.sweep import figure_coverage, make_plan, rule_jobs
from workflow_helpers import TINY


@pytest.fixture(scope="module")
def tiny_plan():
    return make_plan(load_config(TINY))


@pytest.fixture(scope="module")
def tiny_figures(tiny_plan):
    return [name for name, why in figure_coverage(tiny_plan).items() if why is None]


def _rates(**changes) -> Rates:
    base = Rates(label="test", kind="cpu", estimate=False, cores=2, gemm_fp32=1e10, gemm_fp64=5e9, exp_fp32=1e8,
                 exp_fp64=5e7, estimator_efficiency=0.5, diagnostics_factor=2.0,
                 train_efficiency={"default": 0.01}, job_overhead_s=3.0)
    return dataclasses.replace(base, **changes)


def test_estimator_work_by_hand(tiny_plan):
    """test_tiny: digits 16×16×1, N = 40, P = 3; a shard is 2 images × 1 σ per split."""
    run = next(a for a in tiny_plan.analytics if a.estimator == "lemmse" and a.patch == 3 and a.train_size == 40)
    work = estimator_work(tiny_plan, run, 2)
    assert (work.queries, work.keys, work.features, work.diagnostics) == (2 * 256, 40 * 256, 9, True)
    assert work.score_flops == 2 * 512 * 10240 * 9 and work.exps == 512 * 10240
    smoothed = next(a for a in tiny_plan.analytics if a.estimator == "smoothed")
    assert estimator_work(tiny_plan, smoothed, 2).queries == 2 * 2 * 256  # 2 samples
    mmse = next(a for a in tiny_plan.analytics if a.estimator == "mmse")
    assert (estimator_work(tiny_plan, mmse, 2).queries, estimator_work(tiny_plan, mmse, 2).features) == (2, 256)


@given(q=st.integers(1, 10**6), k=st.integers(1, 10**6), f=st.integers(1, 400), diag=st.booleans())
@settings(max_examples=50)
def test_estimator_seconds_formula(q, k, f, diag):
    rates = _rates()
    expected = (2 * q * k * f / 1e10 + q * k / 1e8) / 0.5 * (2.0 if diag else 1.0)
    assert math.isclose(EstimatorWork(q, k, f, diag).seconds(rates), expected, rel_tol=1e-12)


@pytest.mark.parametrize("arch", ["unet", "resnet", "patchmlp"])
def test_meta_flop_count_equals_a_real_run(arch):
    """Counting on the meta device (no compute) gives the FLOPs of the same step run for real."""
    step, image = model_flops(arch, "small", {}, 5, 1, 16, 4)
    model = build_model(arch, 1, 5, resolve_options(arch, 5, "small", {}))
    x, sigma = torch.rand(4, 1, 16, 16), torch.rand(4)
    with FlopCounterMode(display=False) as counter:
        model(x, sigma).sum().backward()
    assert step == counter.get_total_flops() > 0
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:1], sigma[:1])
    assert image == counter.get_total_flops()
    assert 2.5 * 4 * image < step < 3.5 * 4 * image  # backward ≈ 2 forwards


def test_conv_flops_by_hand():
    """One 3×3 convolution of C_in → C_out on H×W: 2·C_in·C_out·9·H·W FLOPs forward (the counter's
    convention, that the network counts rest on)."""
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        conv(torch.rand(1, 3, 16, 16))
    assert counter.get_total_flops() == 2 * 3 * 8 * 9 * 16 * 16


def test_predict_totals_follow_the_formulas(tiny_plan, tiny_figures):
    rates = _rates()
    costs = predict(tiny_plan, tiny_figures, rates)
    jobs = rule_jobs(tiny_plan, tiny_figures)
    assert {r: c.jobs for r, c in costs.items()} == jobs
    assert costs["all"].seconds == 0 and costs["gather"].seconds == 3.0
    # variance: per task one call per pre-inverse (I, A⁺) on draws × images = 2 measurements, P = 3, N = 20
    work = EstimatorWork(2 * 256, 20 * 256, 9)
    assert math.isclose(costs["variance"].seconds, 2 * 3.0 + 2 * 2 * work.seconds(rates), rel_tol=1e-12)
    assert math.isclose(costs["variance"].score_flops, 2 * 2 * work.score_flops, rel_tol=1e-12)
    # training: steps × flops per step / (efficiency × gemm), since no step was measured
    t = tiny_plan.config["training"]
    expected = sum(t["steps"] * model_flops(r.arch, t["preset"], t["model_options"].get(r.arch, {}), r.patch, 1, 16,
                                            t["batch_size"])[0] for r in tiny_plan.networks)
    assert math.isclose(costs["train_network"].model_flops, expected, rel_tol=1e-12)
    assert math.isclose(costs["train_network"].seconds, len(tiny_plan.networks) * 3.0 + expected / (0.01 * 1e10), rel_tol=1e-9)
    assert all(c.device == "cpu" and c.gpu_hours == 0 for c in costs.values())
    assert math.isclose(costs["analytic_shard"].core_hours, costs["analytic_shard"].seconds * 2 / 3600)


def test_measured_step_time_wins_and_gpu_rules_go_to_the_gpu(tiny_plan, tiny_figures):
    t = tiny_plan.config["training"]
    run = tiny_plan.networks[0]
    key = (f"{run.arch}|{t['preset']}|{json.dumps(t['model_options'].get(run.arch, {}), sort_keys=True)}|"
           f"P{run.patch}|1x16x16|b{t['batch_size']}")
    costs = predict(tiny_plan, tiny_figures, _rates(train_steps={key: {"seconds_per_step": 1.0}}))
    base = predict(tiny_plan, tiny_figures, _rates())
    flops = model_flops(run.arch, t["preset"], t["model_options"].get(run.arch, {}), run.patch, 1, 16,
                        t["batch_size"])[0]
    same = sum(1 for r in tiny_plan.networks if (r.arch, r.patch, r.dataset) == (run.arch, run.patch, run.dataset))
    assert same >= 1 and all(r.dataset == "digits" for r in tiny_plan.networks)
    shift = same * t["steps"] * (1.0 - flops / (0.01 * 1e10))  # every network of that key
    assert math.isclose(costs["train_network"].seconds - base["train_network"].seconds, shift, rel_tol=1e-9)
    split = predict(tiny_plan, tiny_figures, _rates(), PROFILES["h100"])
    for rule, c in split.items():
        assert c.device == ("gpu" if rule in GPU_RULES else "cpu"), rule
        assert (c.gpu_hours > 0) == (rule in GPU_RULES)


def test_rates_file_round_trip_and_errors(tmp_path):
    rates = _rates(train_steps={"k": {"seconds_per_step": 0.5, "flops_per_step": 1e6}})
    path = write_rates(tmp_path / "rates.json", rates)
    assert load_rates(path) == rates
    with pytest.raises(LemmseInputError, match="no such file"):
        load_rates(tmp_path / "missing.json")
    data = rates.to_json()
    (tmp_path / "bad.json").write_text(json.dumps({**data, "gemm_fp32": -1}))
    with pytest.raises(LemmseInputError, match="gemm_fp32 must be a positive number"):
        load_rates(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({**data, "format": 0}))
    with pytest.raises(LemmseInputError, match="format"):
        load_rates(tmp_path / "old.json")


def test_profiles_are_labelled_estimates():
    for name, rates in PROFILES.items():
        assert rates.estimate and "ESTIMATE" in rates.label and rates.kind == "gpu", name
    assert PROFILES["a100"].gemm_fp32 == 19.5e12 and PROFILES["h100"].gemm_fp32 == 67e12


def test_read_benchmarks(tmp_path):
    head = "s\th:m:s\tmax_rss\n"
    (tmp_path / "train_network" / "a").mkdir(parents=True)
    (tmp_path / "train_network" / "a" / "x.tsv").write_text(head + "2.5\t0:00:02\t10\n")
    (tmp_path / "train_network" / "b.tsv").write_text(head + "1.0\t0:00:01\t10\n3.0\t0:00:03\t10\n")
    (tmp_path / "variance").mkdir()
    (tmp_path / "variance" / "v.tsv").write_text(head + "4.0\t0:00:04\t10\n")
    assert read_benchmarks(tmp_path) == {"train_network": (2, 4.5), "variance": (1, 4.0)}
    with pytest.raises(LemmseInputError, match="no such folder"):
        read_benchmarks(tmp_path / "nope")


def test_read_benchmarks_cpu_clock_warns_where_snakemake_sampled_sparsely(tmp_path, caplog):
    """Snakemake's cpu_time is its last reading (every 0.5 s up to 15 s, then every 30 s): a 38-s training
    job of the default run recorded 15 CPU-s. The cpu clock still sums the column, and names the rule."""
    head = "s\th:m:s\tmax_rss\tcpu_time\n"
    (tmp_path / "train_network").mkdir()
    (tmp_path / "train_network" / "long.tsv").write_text(head + "38.3\t0:00:38\t10\t14.99\n")
    (tmp_path / "variance").mkdir()
    (tmp_path / "variance" / "short.tsv").write_text(head + "6.7\t0:00:06\t10\t6.5\n")
    with caplog.at_level("WARNING", logger="lemmse.cost"):
        assert read_benchmarks(tmp_path, clock="cpu") == {"train_network": (1, 14.99), "variance": (1, 6.5)}
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("train_network: cpu_time of 1 job(s) longer than 15 s")
    caplog.clear()
    with caplog.at_level("WARNING", logger="lemmse.cost"):
        read_benchmarks(tmp_path, clock="wall")
    assert not caplog.records


def test_plan_cost_cli(tmp_path, capsys, tiny_plan, tiny_figures):
    rates_file = write_rates(tmp_path / "rates.json", _rates())
    bench = tmp_path / "bench" / "variance"
    bench.mkdir(parents=True)
    (bench / "x.tsv").write_text("s\th:m:s\n7.0\t0:00:07\n")
    assert main(["plan", str(TINY), "--cost", "--rates", str(rates_file), "--compare", str(tmp_path / "bench")]) == 0
    out = capsys.readouterr().out
    costs = predict(tiny_plan, tiny_figures, _rates())
    cost_part = out.split("Predicted cost", 1)[1]
    line = next(line for line in cost_part.splitlines() if line.split()[:1] == ["variance"]).split()
    assert line[1:3] == ["2", "cpu"] and float(line[6]) == pytest.approx(costs["variance"].seconds / 3600, rel=1e-2)
    assert float(line[9]) == pytest.approx(7.0 / 3600, rel=1e-2)
    assert float(line[10]) == pytest.approx(7.0 / costs["variance"].seconds, abs=0.01)
    assert "CPU rules on: test (the GPU rules too)" in out and "ESTIMATE" not in out
    assert main(["plan", str(TINY), "--cost", "--device-profile", "a100"]) == 0
    out = capsys.readouterr().out
    assert "GPU rules on: NVIDIA A100" in out and "ESTIMATE" in out
