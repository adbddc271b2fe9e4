"""The workflow through a real SLURM cluster (one node on loopback, see scripts/ci/slurm_up.sh).

A cut-down tiny config runs with ``snakemake --profile slurm`` (GPU requests off, job status
from ``squeue``); the test checks that the jobs really went through ``sbatch`` — their SLURM
job ids are in the plugin's logs and ``scontrol`` knows them — and that the metrics cube is
complete.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
import yaml

from fixtures_slurm import run_snakemake_on_slurm, slurm_job_ids
from lemmse.sweep import load_config, make_plan
from workflow_helpers import SNAKEFILE, TINY, make_workdir

pytestmark = pytest.mark.workflow


def _slurm_config(tmp_path: Path) -> Path:
    config = yaml.safe_load(TINY.read_text())
    config["studies"] = {
        "noise": {"datasets": ["digits"], "problems": [{"task": "denoising", "preinverse": "identity"}],
                  "archs": ["resnet"], "patches": [3], "train_sizes": [40]},
        "patch_size": {"datasets": ["digits"], "problems": [{"task": "denoising", "preinverse": "identity"}],
                       "archs": ["resnet"], "patches": [3, 5], "train_sizes": [40]},
    }
    config["datasets"] = {"digits": config["datasets"]["digits"]}
    config["memorisation"] = {}
    config["variance"] = {}
    path = tmp_path / "slurm_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_workflow_runs_through_sbatch(slurm_cluster, tmp_path):
    configfile = _slurm_config(tmp_path)
    plan = make_plan(load_config(configfile))
    workdir = make_workdir(tmp_path / "work")
    proc = run_snakemake_on_slurm(workdir, SNAKEFILE, configfile, ["all"], cluster=slurm_cluster, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-6000:]
    ids = slurm_job_ids(workdir)
    for rule in ("train_network", "evaluate_network", "analytic_shard", "gather"):
        assert any(rule in folder for folder in ids), f"no SLURM job of {rule}: {sorted(ids)}"
    # small jobs share submissions: the shards of a store went out as one group job
    assert any(folder.startswith("group_analytic_shards") for folder in ids), sorted(ids)
    every_id = sorted({i for group in ids.values() for i in group})
    assert len(every_id) >= len(plan.networks) + len(plan.analytics)
    shown = subprocess.run(["scontrol", "show", "job", every_id[-1]], capture_output=True, text=True)
    assert "JobState=COMPLETED" in shown.stdout, shown.stdout + shown.stderr
    results = workdir / plan.results
    metrics = pd.read_parquet(results / "tables" / "metrics.parquet")
    m = plan.config["measurements"]
    assert len(metrics) == len(plan.comparisons) * 2 * m["n_eval"] * len(m["sigmas"])
    assert metrics[["psnr_net_truth", "psnr_est_truth", "psnr_net_est"]].notna().all().all()
    cube = xr.open_zarr(results / "tables" / "metrics.zarr")
    assert cube.attrs["complete"] is True
    assert (results / "claims.md").is_file()
