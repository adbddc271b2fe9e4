"""A SLURM cluster for tests, and a helper that runs a workflow through it with the repo's profile.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.fixtures_slurm"]`` (or
``["fixtures_slurm"]`` when ``tests/`` is not a package). It provides:

``slurm_cluster`` (session fixture)
    A :class:`SlurmCluster` when ``sbatch`` exists and ``scontrol ping`` finds a controller (CI
    starts one with ``scripts/ci/slurm_up.sh``). Otherwise the test is skipped, or fails when the
    environment sets ``LEMMSE_REQUIRE_SLURM=1``.

``run_snakemake_on_slurm(workdir, snakefile, configfile=None, targets=(), ...)``
    Runs ``snakemake --profile slurm`` (the repository's profile, unchanged) in ``workdir`` with
    only the documented variables set (:func:`slurm_env`: no GPUs, the CI partition, no status
    command: the profile finds it) and returns the ``CompletedProcess``.

``copy_repository(dest)``
    The tracked files of the repository at ``dest``, to run commands from a repository root
    verbatim without touching this checkout's ``results/``.

``slurm_job_ids(workdir)``
    The SLURM job ids snakemake submitted from ``workdir`` (from ``.snakemake/slurm_logs``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO_ROOT / "slurm"
STATE_FILE = Path(os.environ.get("LEMMSE_SLURM_STATE_DIR", "/var/tmp/lemmse-slurm")) / "cluster.env"


@dataclass(frozen=True)
class SlurmCluster:
    """A reachable SLURM controller; ``partition`` is its default partition."""

    partition: str
    node: str | None
    cpus: int = 1  # CPUs of the smallest node of the partition
    profile: Path = SLURM_PROFILE


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _read_state_file() -> dict[str, str]:
    if not STATE_FILE.is_file():
        return {}
    pairs = (line.split("=", 1) for line in STATE_FILE.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def find_slurm_cluster() -> tuple[SlurmCluster | None, str]:
    """The running cluster, or None and the reason why there is none."""
    if shutil.which("sbatch") is None:
        return None, "sbatch is not installed (start a cluster with `bash scripts/ci/slurm_up.sh`)"
    try:
        ping = _run("scontrol", "ping", timeout=15)
    except subprocess.TimeoutExpired:
        return None, "`scontrol ping` timed out"
    if "UP" not in ping.stdout:
        return None, f"no SLURM controller answers `scontrol ping`: {(ping.stdout + ping.stderr).strip()}"
    state = _read_state_file()
    partition = state.get("LEMMSE_SLURM_PARTITION")
    if not partition:  # a cluster not started by slurm_up.sh: take its default partition
        names = _run("sinfo", "--noheader", "--format=%P").stdout.split()
        partition = next((name.rstrip("*") for name in names if name.endswith("*")), "")
        if not partition:
            return None, "the SLURM cluster has no default partition"
    cpus = _run("sinfo", "--noheader", f"--partition={partition}", "--format=%c").stdout.split()
    return SlurmCluster(
        partition=partition,
        node=state.get("LEMMSE_SLURM_NODE"),
        cpus=min((int(c.rstrip("+")) for c in cpus if c.rstrip("+").isdigit()), default=1),
    ), ""


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The SLURM cluster; skips (or fails under ``LEMMSE_REQUIRE_SLURM=1``) when there is none."""
    cluster, reason = find_slurm_cluster()
    if cluster is None:
        if os.environ.get("LEMMSE_REQUIRE_SLURM") == "1":
            pytest.fail(f"LEMMSE_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    return cluster


def slurm_env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    """The environment a user sets on the CI cluster (slurm/README.md): no GPUs, partition ``ci``.

    ``LEMMSE_SLURM_STATUS_COMMAND`` is removed, so the profile must find the status command
    itself; ``extra`` adds or overrides variables. The venv's ``bin/`` goes first on ``PATH``, as
    after activating it (jobs run ``python -m snakemake`` from this environment).
    """
    env = {key: value for key, value in os.environ.items() if key != "LEMMSE_SLURM_STATUS_COMMAND"}
    env.update(LEMMSE_SLURM_GPUS="0", LEMMSE_SLURM_PARTITION=cluster.partition)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def copy_repository(dest: Path) -> Path:
    """A copy of the repository's tracked files at ``dest`` (a fresh clone's root, without .git)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=False)
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            if name and (REPO_ROOT / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / name, dest / name)
    else:  # not a git checkout: everything but outputs and environments
        shutil.copytree(REPO_ROOT, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__"))
    return dest


def run_snakemake_on_slurm(
    workdir: Path,
    snakefile: Path,
    configfile: Path | None = None,
    targets: Sequence[str] = (),
    *,
    cluster: SlurmCluster | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run ``snakemake --profile slurm`` (the repository's profile as it is) in ``workdir``.

    Only the documented environment variables are set (:func:`slurm_env`). Never raises on
    failure; stdout and stderr are captured together in ``.stdout`` of the result.
    """
    if cluster is None:
        cluster, reason = find_slurm_cluster()
        if cluster is None:
            raise RuntimeError(reason)
    workdir = Path(workdir)
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(snakefile),
        "--directory", str(workdir),
        "--profile", str(cluster.profile),
    ]
    cmd += [*targets]  # before the options: --configfile takes several values and would swallow them
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += [*extra_args]
    return subprocess.run(
        cmd, cwd=workdir, env=env or slurm_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout, check=False,
    )


def job_state(job_id: str) -> str:
    """State of a job as `scontrol` reports it (finished jobs stay visible for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return next(field.split("=", 1)[1] for field in out.split() if field.startswith("JobState="))


def slurm_job_ids(workdir: Path) -> dict[str, set[str]]:
    """SLURM job ids per log folder (``rule_<name>`` or ``group_<group>_<rules>``) under ``workdir``."""
    logs = Path(workdir) / ".snakemake" / "slurm_logs"
    ids: dict[str, set[str]] = {}
    for log in logs.rglob("*.log"):
        if log.stem.isdigit():
            ids.setdefault(log.relative_to(logs).parts[0], set()).add(log.stem)
    return ids
