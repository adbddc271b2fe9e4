"""The cluster half of the workflow: a real SLURM job, and a tiny workflow through the slurm/ profile.

Needs a running SLURM cluster (``bash scripts/ci/slurm_up.sh``); skipped without one unless
``LEMMSE_REQUIRE_SLURM=1``.
"""
from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from fixtures_slurm import SlurmCluster, run_snakemake_on_slurm, slurm_cluster, slurm_job_ids

# Imported so this module works before conftest.py loads the plugin; harmless afterwards.
__all__ = ["slurm_cluster"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _job_state(job_id: str) -> str:
    """State of a job as `scontrol` reports it (finished jobs stay visible for MinJobAge)."""
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    return next(field.split("=", 1)[1] for field in out.split() if field.startswith("JobState="))


def test_sbatch_runs_a_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "hello.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", f"--partition={slurm_cluster.partition}", "--ntasks=1",
         "--time=2", "--mem=100", f"--output={out}", "--wrap", "echo hello from $SLURM_JOB_ID"],
        capture_output=True, text=True, check=True,
    )
    job_id = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 120
    while (state := _job_state(job_id)) in {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"}:
        assert time.monotonic() < deadline, f"job {job_id} still {state} after 120 s"
        time.sleep(0.5)
    assert state == "COMPLETED", f"job {job_id} ended {state}: {out.read_text() if out.exists() else ''}"
    assert out.read_text().strip() == f"hello from {job_id}"


# Three grouped `make_part` jobs (one sbatch submission) feed a `train_network` job, which the
# slurm profile gives its GPU resources (switched off here) and a separate submission. Each job
# writes the SLURM job id it ran under, so the test can tell where it ran.
SNAKEFILE = textwrap.dedent(
    """
    PARTS = range(3)

    rule all:
        input: "out/summary.txt"

    rule make_part:
        output: "out/part_{i}.txt"
        group: "small"
        resources: runtime=5, mem_mb=100
        shell: "echo $SLURM_JOB_ID > {output}"

    rule train_network:
        input: expand("out/part_{i}.txt", i=PARTS)
        output: "out/summary.txt"
        shell: "cat {input} > {output} && echo $SLURM_JOB_ID >> {output}"
    """
)


def test_snakemake_profile_submits_through_slurm(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SNAKEFILE)

    result = run_snakemake_on_slurm(tmp_path, snakefile, targets=["all"], cluster=slurm_cluster)
    assert result.returncode == 0, result.stdout

    part_ids = {(tmp_path / f"out/part_{i}.txt").read_text().strip() for i in range(3)}
    summary = (tmp_path / "out/summary.txt").read_text().split()
    assert len(part_ids) == 1, f"grouped jobs ran in several submissions: {part_ids}"
    (group_id,) = part_ids
    train_id = summary[-1]
    assert summary[:3] == [group_id] * 3
    assert train_id.isdigit() and group_id.isdigit() and train_id != group_id

    # the ids are SLURM's: snakemake logged them, and the controller ran them to completion
    logged = slurm_job_ids(tmp_path)
    assert logged == {"group_small_make_part": {group_id}, "rule_train_network": {train_id}}, logged
    for job_id in (group_id, train_id):
        assert _job_state(job_id) == "COMPLETED"
    assert "submitted with SLURM jobid" in result.stdout

    # a rerun finds everything done and submits nothing
    rerun = run_snakemake_on_slurm(tmp_path, snakefile, targets=["all"], cluster=slurm_cluster)
    assert rerun.returncode == 0, rerun.stdout
    assert "Nothing to be done" in rerun.stdout
