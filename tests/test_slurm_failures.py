"""What a cluster does to a run, on the real one-node SLURM cluster (scripts/ci/slurm_up.sh).

* job status: the profile picks ``squeue`` on this cluster without accounting; a status command
  that cannot answer stops snakemake at once, with the reason, instead of polling forever;
* a job no node can hold stops the run before anything is submitted;
* a shard job that exceeds its time limit (it blocks reading a measurement chunk that the test
  replaced by a FIFO, so it runs until SLURM kills it) is reported failed, its store stays
  incomplete, and the next run redoes only that shard and ends with the store of an
  uninterrupted run;
* a training job that gets TERM from SLURM (what ``--signal=TERM@…`` sends before the time limit
  and pre-emption sends) checkpoints, exits 75, is resubmitted and resumes, and ends bitwise
  equal to an uninterrupted run.

Uses the tiny config cut to one network and one estimator store, and narrow targets.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fixtures_slurm import job_state, run_snakemake_on_slurm, slurm_env, slurm_job_ids
from lemmse import store as zstore
from lemmse.cluster import ClusterError, status_command
from lemmse.plan.config import load_config
from lemmse.plan.sweep import make_plan
from lemmse.training import load_checkpoint
from test_workflow_slurm import slurm_tiny_config
from workflow_helpers import SNAKEFILE, job_counts, make_workdir, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.timeout(1200)]


def _config(tmp_path: Path, **changes) -> Path:
    path = slurm_tiny_config(tmp_path / "slurm_tiny.yaml")
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value}
    path.write_text(yaml.safe_dump(config))
    return path


# --- job status ----------------------------------------------------------------------------------

def test_status_command_is_squeue_without_accounting_and_sacct_is_refused(slurm_cluster):
    assert status_command("") == "squeue"
    assert status_command("squeue") == "squeue"
    with pytest.raises(ClusterError, match="'sacct' cannot answer.*accounting storage is disabled.*"
                                           "LEMMSE_SLURM_STATUS_COMMAND=squeue"):
        status_command("sacct")
    with pytest.raises(ClusterError, match="choose 'sacct' or 'squeue'"):
        status_command("qstat")


def test_a_status_command_that_cannot_answer_stops_snakemake_before_any_job(slurm_cluster, tmp_path):
    configfile = _config(tmp_path)
    workdir = make_workdir(tmp_path / "work")
    proc = run_snakemake_on_slurm(workdir, SNAKEFILE, configfile, ["all"], cluster=slurm_cluster, timeout=300,
                                  env=slurm_env(slurm_cluster, LEMMSE_SLURM_STATUS_COMMAND="sacct"))
    assert proc.returncode != 0
    assert "job status command 'sacct' cannot answer" in proc.stdout, proc.stdout[-3000:]
    assert "Slurm accounting storage is disabled" in proc.stdout
    assert "submitted with SLURM jobid" not in proc.stdout
    assert slurm_job_ids(workdir) == {}


def test_a_job_no_node_can_hold_stops_the_run_before_submission(slurm_cluster, tmp_path):
    configfile = _config(tmp_path, analytic={"max_memory_mb": 10**6})
    workdir = make_workdir(tmp_path / "work")
    proc = run_snakemake_on_slurm(workdir, SNAKEFILE, configfile, ["all"], cluster=slurm_cluster, timeout=300)
    assert proc.returncode != 0
    assert "rule analytic_shard needs" in proc.stdout and "analytic.max_memory_mb=1000000" in proc.stdout, \
        proc.stdout[-3000:]
    assert f"largest node of partition '{slurm_cluster.partition}' has" in proc.stdout
    assert "could never start" in proc.stdout
    assert "submitted with SLURM jobid" not in proc.stdout


# --- a shard past its time limit -----------------------------------------------------------------

def _chunk(measurements: Path, split: int, image_block: int, sigma: int) -> Path:
    found = [p for p in (measurements / "y").iterdir() if p.name.startswith(f"{split}.{image_block}.{sigma}.")]
    assert len(found) == 1, sorted(p.name for p in (measurements / "y").iterdir())
    return found[0]


def _assert_same_store(a: Path, b: Path) -> None:
    da, db = zstore.open_dataset(a), zstore.open_dataset(b)
    assert sorted(da.data_vars) == sorted(db.data_vars)
    for var in da.data_vars:
        assert np.array_equal(da[var].values, db[var].values, equal_nan=True), var


@pytest.mark.slow
def test_a_shard_past_its_time_limit_fails_and_the_rerun_redoes_only_that_shard(slurm_cluster, tmp_path):
    configfile = _config(tmp_path, analytic={"shards_per_job": 1})  # each shard its own SLURM job
    plan = make_plan(load_config(configfile))
    (run,) = plan.analytics
    results = Path(plan.results)
    target, store = str(run.complete_marker(results)), run.store(results)
    measurements = plan.measurement_store(run.eval_dataset, run.task)
    data = plan.data_store(run.dataset)
    shards = plan.shards(run)
    assert len(shards) == 2  # σ index 0 and 1, all images

    reference = make_workdir(tmp_path / "reference")
    done = snakemake(reference, "--cores", "2", target, configfile=configfile)
    assert done.returncode == 0, done.stdout[-3000:]

    work = make_workdir(tmp_path / "work")
    done = snakemake(work, "--cores", "2", str(data), str(measurements), configfile=configfile)
    assert done.returncode == 0, done.stdout[-3000:]
    chunk = _chunk(work / measurements, split=0, image_block=0, sigma=1)  # read by the σ-index-1 shard only
    saved = chunk.read_bytes()
    chunk.unlink()
    os.mkfifo(chunk)  # opening it blocks until a writer comes: the shard hangs until its limit

    first = run_snakemake_on_slurm(work, SNAKEFILE, configfile, [target], cluster=slurm_cluster, timeout=900,
                                   extra_args=["--retries", "0", "--set-resources", "analytic_shard:runtime=1",
                                               "--group-components", "analytic_shards=1"])
    assert first.returncode != 0, first.stdout[-4000:]
    assert "Error in rule analytic_shard" in first.stdout, first.stdout[-4000:]  # SLURM state below
    shard_ids = {i for folder, ids in slurm_job_ids(work).items() if "analytic_shard" in folder for i in ids}
    assert sorted(job_state(i) for i in shard_ids) == ["COMPLETED", "TIMEOUT"]
    markers = {(i, s): (work / f"{run.stem(results)}.shards/i{i}-s{s}.done").exists() for i, s in shards}
    assert markers == {(0, 0): True, (0, 1): False}
    assert not zstore.is_complete(work / store) and not (work / target).exists()
    xhat = zstore.open_dataset(work / store, complete=False)["xhat"].values
    assert np.isnan(xhat[:, :, 1]).all() and not np.isnan(xhat[:, :, 0]).any()

    chunk.unlink()
    chunk.write_bytes(saved)
    second = run_snakemake_on_slurm(work, SNAKEFILE, configfile, [target], cluster=slurm_cluster, timeout=900)
    assert second.returncode == 0, second.stdout[-4000:]
    counts = job_counts(second.stdout)
    assert counts.get("analytic_shard") == 1 and counts.get("analytic_finalize") == 1, counts
    assert not {"prepare_dataset", "measure", "analytic_template"} & set(counts), counts
    _assert_same_store(work / store, reference / store)


# --- training stopped by SLURM -------------------------------------------------------------------

@pytest.mark.slow
def test_training_terminated_by_slurm_checkpoints_retries_and_resumes_bitwise(slurm_cluster, tmp_path):
    configfile = _config(tmp_path, training={"steps": 1000, "checkpoint_every": 400})
    plan = make_plan(load_config(configfile))
    (network,) = plan.networks
    model_dir = network.directory(Path(plan.results))
    target = str(model_dir / "trained.json")

    reference = make_workdir(tmp_path / "reference")
    done = snakemake(reference, "--cores", "2", target, configfile=configfile)
    assert done.returncode == 0, done.stdout[-3000:]

    work = make_workdir(tmp_path / "work")
    done = snakemake(work, "--cores", "2", str(plan.data_store(network.dataset)), configfile=configfile)
    assert done.returncode == 0, done.stdout[-3000:]
    log = work / "snakemake-slurm.log"
    with open(log, "w") as out:
        cmd = ["snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(work), "--profile",
               str(slurm_cluster.profile), target, "--configfile", str(configfile)]
        proc = subprocess.Popen(cmd, cwd=work, env=slurm_env(slurm_cluster), stdout=out, stderr=subprocess.STDOUT)
    try:
        stats = work / model_dir / "stats.jsonl"
        deadline = time.monotonic() + 600
        while not (stats.exists() and stats.read_text().strip()):  # training has begun in its job
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        (job_id,) = slurm_job_ids(work)["rule_train_network"]
        subprocess.run(["scancel", "--signal=TERM", job_id], check=True)  # every step of the job, as SLURM does
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    output = log.read_text()
    assert rc == 0, output[-4000:]
    # The stopped attempt exits 75 and is restarted, here inside the same allocation (the
    # snakemake that runs the job in it retries too); after a real time limit the allocation is
    # gone and the submitting snakemake resubmits it instead (next test).
    ids = sorted(slurm_job_ids(work)["rule_train_network"], key=int)
    assert ids[0] == job_id and job_state(ids[-1]) == "COMPLETED", ids
    slurm_logs = "".join(p.read_text() for p in (work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert "returned non-zero exit status 75" in slurm_logs and "Trying to restart job" in slurm_logs
    rule_log = "".join(p.read_text() for p in (work / plan.results / "logs" / "train_network").rglob("*.log"))
    resumed = re.search(r"resuming \S+ at step (\d+) of 1000", rule_log)
    assert resumed and 10 <= int(resumed.group(1)) < 1000, rule_log
    a, b = load_checkpoint(work / model_dir), load_checkpoint(reference / model_dir)
    assert a["step"] == b["step"] == 1000
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"


@pytest.mark.slow
def test_a_training_past_its_time_limit_fails_and_its_retry_finishes_it_identically(slurm_cluster, tmp_path):
    """The training job blocks reading its images (a FIFO in place of a chunk of the data store)
    until SLURM kills it at its 1-minute limit; snakemake reports the TIMEOUT and resubmits it,
    the test puts the chunk back meanwhile, and the retry trains the network that an
    uninterrupted run trains."""
    configfile = _config(tmp_path)
    plan = make_plan(load_config(configfile))
    (network,) = plan.networks
    model_dir = network.directory(Path(plan.results))
    target = str(model_dir / "trained.json")
    data = plan.data_store(network.dataset)

    reference = make_workdir(tmp_path / "reference")
    done = snakemake(reference, "--cores", "2", target, configfile=configfile)
    assert done.returncode == 0, done.stdout[-3000:]

    work = make_workdir(tmp_path / "work")
    done = snakemake(work, "--cores", "2", str(data), configfile=configfile)
    assert done.returncode == 0, done.stdout[-3000:]
    chunks = sorted((work / data / "train").glob("0.*"))
    assert chunks, sorted(p.name for p in (work / data / "train").iterdir())
    chunk, saved = chunks[0], chunks[0].read_bytes()
    chunk.unlink()
    os.mkfifo(chunk)

    log = work / "snakemake-slurm.log"
    with open(log, "w") as out:
        cmd = ["snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(work), "--profile",
               str(slurm_cluster.profile), target, "--configfile", str(configfile),
               "--set-resources", "train_network:runtime=1"]
        proc = subprocess.Popen(cmd, cwd=work, env=slurm_env(slurm_cluster), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        first = None
        while first is None or job_state(first) != "TIMEOUT":
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"job {first} never timed out"
            first = next(iter(slurm_job_ids(work).get("rule_train_network", ())), None)
            time.sleep(0.5)
        chunk.unlink()
        chunk.write_bytes(saved)
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    output = log.read_text()
    assert rc == 0, output[-4000:]
    assert "Error in rule train_network" in output, output[-4000:]  # reported; SLURM's state below
    ids = sorted(slurm_job_ids(work)["rule_train_network"], key=int)
    assert ids[0] == first and [job_state(i) for i in ids] == ["TIMEOUT", "COMPLETED"], ids
    a, b = load_checkpoint(work / model_dir), load_checkpoint(reference / model_dir)
    assert a["step"] == b["step"] == plan.config["training"]["steps"]
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
