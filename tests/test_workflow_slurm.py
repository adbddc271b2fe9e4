"""The workflow through a real SLURM cluster (one node on loopback, see scripts/ci/slurm_up.sh),
run exactly as slurm/README.md tells a user: from a repository root,

    LEMMSE_SLURM_GPUS=0 LEMMSE_SLURM_PARTITION=ci snakemake all --profile slurm --configfile <tiny config>

with no LEMMSE_SLURM_STATUS_COMMAND (the profile must find ``squeue`` on this cluster without
accounting) and the profile unchanged (requests must fit a 2-CPU node by themselves). The
config is the tiny one cut to one study. The test checks that the jobs went through ``sbatch``,
that each heavy job's memory request was sized from its needs and covered what it used (the
benchmark's max RSS), and that the metrics cube is complete.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
import yaml

from fixtures_slurm import copy_repository, slurm_env, slurm_job_ids
from lemmse.plan.config import load_config
from lemmse.plan.sweep import make_plan
from workflow_helpers import TINY

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.timeout(1800)]


def slurm_tiny_config(path: Path) -> Path:
    """The tiny config with one study (one network, one estimator store): few SLURM jobs."""
    config = yaml.safe_load(TINY.read_text())
    config["studies"] = {
        "noise": {"datasets": ["digits"], "problems": [{"task": "denoising", "preinverse": "identity"}],
                  "archs": ["resnet"], "patches": [3], "train_sizes": [40]},
    }
    config["datasets"] = {"digits": config["datasets"]["digits"]}
    config["memorisation"] = {}
    config["variance"] = {}
    path.write_text(yaml.safe_dump(config))
    return path


def _requested_mem_mb(slurm_log: Path) -> int:
    match = re.search(r"resources: .*?\bmem_mb=(\d+)", slurm_log.read_text())
    assert match, f"no resources line in {slurm_log}"
    return int(match.group(1))


def test_verbatim_profile_runs_the_workflow(slurm_cluster, tmp_path):
    repo = copy_repository(tmp_path / "repo")
    configfile = slurm_tiny_config(repo / "slurm_tiny.yaml")
    plan = make_plan(load_config(configfile))
    proc = subprocess.run(["snakemake", "all", "--profile", "slurm", "--configfile", "slurm_tiny.yaml"],
                          cwd=repo, env=slurm_env(slurm_cluster), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1700, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:]

    ids = slurm_job_ids(repo)
    for rule in ("train_network", "evaluate_network", "analytic_shard", "gather"):
        assert any(rule in folder for folder in ids), f"no SLURM job of {rule}: {sorted(ids)}"
    every_id = sorted({i for group in ids.values() for i in group}, key=int)
    shown = subprocess.run(["scontrol", "show", "job", every_id[-1]], capture_output=True, text=True)
    assert "JobState=COMPLETED" in shown.stdout, shown.stdout + shown.stderr

    # requests fit the node and cover what the jobs used: threads capped to its CPUs, memory
    # sized from the job (not the 32 GB of old), at least the peak RSS the benchmark measured
    logs = repo / ".snakemake" / "slurm_logs"
    results = repo / plan.results
    measured = 0
    for rule in ("train_network", "analytic_shard"):  # shards: in group jobs (members summed)
        job_logs = [log for folder in logs.glob(f"*{rule}*") for log in folder.rglob("*.log")]
        assert job_logs, rule
        for log in job_logs:
            text = log.read_text()
            for threads in re.findall(r"threads: (\d+)", text):
                assert int(threads) <= slurm_cluster.cpus, text[-2000:]
            requested = _requested_mem_mb(log)
            assert 2048 < requested < 10000, (rule, requested)
            for bench in (results / "benchmarks" / rule).rglob("*.tsv"):
                used = pd.to_numeric(pd.read_csv(bench, sep="\t")["max_rss"], errors="coerce").max()
                if used == used:  # a job too short for a memory sample has none
                    measured += 1
                    assert used < requested, f"{bench}: used {used} MB > requested {requested} MB"
    assert measured >= 1

    metrics = pd.read_parquet(results / "tables" / "metrics.parquet")
    m = plan.config["measurements"]
    assert len(metrics) == len(plan.comparisons) * 2 * m["n_eval"] * len(m["sigmas"])
    assert metrics[["psnr_net_truth", "psnr_est_truth", "psnr_net_est"]].notna().all().all()
    study = next(iter(plan.config["studies"]))
    assert xr.open_zarr(results / "tables" / "studies" / f"{study}.zarr").attrs["complete"] is True
    assert (results / "claims.md").is_file()
