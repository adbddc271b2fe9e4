"""``lemmse bench-train``: one row per architecture with its parameters, FLOPs and both step times.

Timings are never asserted (they belong to the benchmark's output, not to a test); the test checks
what the table claims to be: the parameter counts of the networks the training loop builds, FLOPs
that scale with the batch, the ratios computed from the two times, and bad input named.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from lemmse import bench, bench_training
from lemmse.cli.main import main
from lemmse.models import ARCHITECTURES, count_parameters
from lemmse.training.config import TrainConfig, resolve_config
from lemmse.training.loop import model_from_config


@pytest.fixture()
def small_matmul(monkeypatch):
    """The reference matrix multiply at 256² (its rate is printed, never asserted)."""
    monkeypatch.setattr(bench, "matmul_rate", functools.partial(bench.matmul_rate, size=256))


@pytest.mark.usefixtures("small_matmul", "one_torch_thread")
def test_bench_train_rows_are_the_training_loops_networks(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert main(["bench-train", "--steps", "3", "--size", "8", "--batch-size", "4", "--threads", "1", "-q",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["arch"] for r in rows] == list(ARCHITECTURES)
    images = np.zeros((64, 1, 8, 8), dtype=np.float32)
    for r in rows:
        model = model_from_config(resolve_config(TrainConfig(arch=r["arch"], patch=5), images))
        assert r["parameters"] == count_parameters(model)
        assert r["bare_ms"] > 0 and r["loop_ms"] > 0 and r["flops_per_step"] > 0
        assert r["overhead"] == pytest.approx(r["loop_ms"] / r["bare_ms"])
        assert r["gflops"] == pytest.approx(r["flops_per_step"] / r["bare_ms"] / 1e6)
    printed = capsys.readouterr().out
    assert "| arch | parameters |" in printed and printed.count("| 1.00× |") >= 1  # the fastest one


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_step_flops_scale_with_the_batch(arch):
    """Every counted product (convolutions, the σ embedding's linear layers) is linear in the batch."""
    images = np.zeros((64, 1, 8, 8), dtype=np.float32)
    model = model_from_config(resolve_config(TrainConfig(arch=arch, patch=5), images))
    flops = [bench_training.step_flops(model, torch.rand(b, 1, 8, 8), torch.rand(b)) for b in (4, 8)]
    assert flops[0] > 0 and flops[1] == 2 * flops[0]


@pytest.mark.parametrize("argv, named", [(["--archs", "vgg"], "'vgg'"), (["--model-options", "{bad"], "--model-options"),
                                         (["--model-options", '{"unet": 3}'], "--model-options")])
def test_bench_train_bad_input_is_named(argv, named, capsys):
    assert main(["bench-train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("lemmse: error:") == 1 and named in err
