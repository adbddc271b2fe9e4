"""lemmse.cluster without a cluster: SLURM field parsing, job sizing against a real network, fit."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lemmse import cluster
from lemmse.cluster import ClusterError, PartitionLimits, require_fit, shard_memory_mb, training_memory_mb
from lemmse.models import ARCHITECTURES, build_model, count_parameters, resolve_options


@pytest.mark.parametrize("text, minutes", [("infinite", None), ("UNLIMITED", None), ("1-00:00:00", 1440),
                                           ("2-12:30:00", 3630), ("2:30:00", 150), ("30:00", 30), ("45", 45),
                                           ("0:00:59", 0)])
def test_slurm_time_limits_in_minutes(text, minutes):
    assert cluster._minutes(text) == minutes


@pytest.mark.parametrize("gres, gpus", [("(null)", 0), ("gpu:4", 4), ("gpu:a100:4(S:0-1)", 4),
                                        ("gpu:a100:2,gpu:v100:1", 3), ("shard:8", 0)])
def test_gpus_per_node_from_gres(gres, gpus):
    assert cluster._gpus(gres) == gpus


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_model_footprint_counts_what_a_real_forward_pass_holds(arch):
    """Parameters and activation elements from the meta device equal those of a real CPU network."""
    options = {}
    params, activations = cluster._model_footprint(arch, 3, "small", json.dumps(options), 1, 16)
    net = build_model(arch, 1, 3, resolve_options(arch, 3, "small", options))
    elements = []
    hooks = [m.register_forward_hook(lambda m, a, out: elements.append(out.numel())) for m in net.modules()]
    with torch.no_grad():
        net(torch.rand(1, 1, 16, 16), torch.full((1,), 0.1))
    for hook in hooks:
        hook.remove()
    assert params == count_parameters(net)
    assert activations == sum(elements)


def test_training_and_shard_memory_follow_the_documented_formulas():
    params, acts = cluster._model_footprint("resnet", 3, "small", json.dumps({}), 3, 32)
    data = 500 * 3 * 32 * 32 * 4
    cpu = training_memory_mb("resnet", 3, "small", {}, channels=3, resolution=32, train_size=500, batch_size=256)
    gpu = training_memory_mb("resnet", 3, "small", {}, channels=3, resolution=32, train_size=500, batch_size=256,
                             activations_on_host=False)
    assert cpu == 256 * math.ceil((2048 + (3 * data + 32 * params + 8 * 256 * acts) / 2**20) / 256)
    assert gpu == 256 * math.ceil((2048 + (3 * data + 32 * params) / 2**20) / 256)
    assert gpu <= cpu and cpu % 256 == 0
    assert shard_memory_mb(1000, channels=3, resolution=32, train_size=500) == \
        256 * math.ceil((2048 + 1000 + 2 * data / 2**20) / 256)


def test_require_fit_names_rule_request_and_node(monkeypatch):
    monkeypatch.setattr(cluster, "partition_limits", lambda name="": PartitionLimits(name or "gpu", 8, 16000, 1, 60))
    monkeypatch.setenv("LEMMSE_SLURM_GPU_PARTITION", "gpu")
    assert require_fit("analytic_shard", 15000, "x") == 15000
    with pytest.raises(ClusterError, match="rule analytic_shard needs 17000 MB \\(bound\\) but the largest node of "
                                           "partition 'gpu' has 16000 MB.*LEMMSE_SLURM_GPU_PARTITION"):
        require_fit("analytic_shard", 17000, "bound")
    monkeypatch.setattr(cluster, "slurm_present", lambda: True)
    assert cluster.runtime(720, "train_network") == "min(720 * attempt, 60)"
    with pytest.raises(ClusterError, match="ask for 2 GPU\\(s\\) but the nodes of partition 'gpu' have at most 1"):
        cluster.require_gpus(2)
    cluster.require_gpus(1)


def test_partition_routing_follows_the_profile_variables(monkeypatch):
    monkeypatch.setenv("LEMMSE_SLURM_PARTITION", "cpu")
    monkeypatch.delenv("LEMMSE_SLURM_GPU_PARTITION", raising=False)
    assert cluster.partition_for("gather") == cluster.partition_for("train_network") == "cpu"
    monkeypatch.setenv("LEMMSE_SLURM_GPU_PARTITION", "gpu")
    assert [cluster.partition_for(r) for r in ("gather", *cluster.GPU_RULES)] == ["cpu", "gpu", "gpu", "gpu"]
    assert cluster.profile_partitions() == ["cpu", "gpu"]
