"""A SLURM cluster for tests, and a helper that runs a workflow through it with the repo's profile.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.fixtures_slurm"]`` (or
``["fixtures_slurm"]`` when ``tests/`` is not a package). It provides:

``slurm_cluster`` (session fixture)
    A :class:`SlurmCluster` when ``sbatch`` exists and ``scontrol ping`` finds a controller (CI
    starts one with ``scripts/ci/slurm_up.sh``). Otherwise the test is skipped, or fails when the
    environment sets ``LEMMSE_REQUIRE_SLURM=1``.

``run_snakemake_on_slurm(workdir, snakefile, configfile=None, targets=(), ...)``
    Runs ``snakemake --profile slurm --profile <CI overlay>`` in ``workdir`` and returns the
    ``CompletedProcess``. The overlay (see :func:`write_ci_profile`) keeps the repository profile
    but switches GPU requests off, caps memory to what the CI node has, uses ``squeue`` for job
    status and checks status every second instead of every 20 s.

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
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO_ROOT / "slurm"
STATE_FILE = Path(os.environ.get("LEMMSE_SLURM_STATE_DIR", "/var/tmp/lemmse-slurm")) / "cluster.env"
# Memory a CI job may ask for (MB): the one-node CI cluster has a few GB, the profile asks for 32 GB.
CI_MAX_MEM_MB = 1000
# Resource keys that request GPUs from SLURM (dropped in CI, which has none).
GPU_RESOURCES = ("gpu", "gpu_model", "gres", "cpus_per_gpu", "tasks_per_gpu")


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


def _load_profile(profile_dir: Path, env: dict[str, str]) -> dict:
    """The profile's YAML after its yte template ran with ``env`` as the environment."""
    import yte

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with open(profile_dir / "config.yaml") as stream:
            return yte.process_yaml(stream, require_use_yte=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def write_ci_profile(dest: Path, cluster: SlurmCluster, max_mem_mb: int = CI_MAX_MEM_MB) -> Path:
    """Write the overlay profile that adapts ``cluster.profile`` to the CI cluster; return its dir.

    Snakemake reads it after the repository profile, and a later profile replaces whole top-level
    keys, so ``set-resources`` and ``default-resources`` are copied from the repository profile
    and only edited: GPU keys removed, ``mem_mb`` capped, the CI partition set.
    """
    base = _load_profile(cluster.profile, {"LEMMSE_SLURM_GPUS": "0"})

    def adapt(resources: dict) -> dict:
        out = {key: value for key, value in resources.items() if key not in GPU_RESOURCES}
        if isinstance(out.get("mem_mb"), int):
            out["mem_mb"] = min(out["mem_mb"], max_mem_mb)
        if "slurm_partition" in out:
            out["slurm_partition"] = cluster.partition
        return out

    overlay = {
        "default-resources": {**adapt(base.get("default-resources", {})), "slurm_partition": cluster.partition},
        "set-resources": {rule: adapt(res) for rule, res in base.get("set-resources", {}).items()},
        # the CI node's CPUs: caps threads and what one grouped submission asks for
        "cores": cluster.cpus,
        "slurm-status-command": "squeue",  # no accounting on the CI cluster; MinJobAge=600
        "slurm-init-seconds-before-status-checks": 2,
        "max-status-checks-per-second": 1,
        "latency-wait": 5,
        "retries": 0,
        "keep-going": False,
    }
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(
        "# Generated by tests/fixtures_slurm.py: the repository's slurm/ profile adapted to the\n"
        "# one-node CI cluster (no GPUs, little memory, squeue for job status).\n"
        + yaml.safe_dump(overlay, sort_keys=False)
    )
    return dest


def run_snakemake_on_slurm(
    workdir: Path,
    snakefile: Path,
    configfile: Path | None = None,
    targets: Sequence[str] = (),
    *,
    cluster: SlurmCluster | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run ``snakemake --profile slurm`` (plus the CI overlay) in ``workdir``; never raises on failure.

    The workflow profile beside ``snakefile`` (``profiles/default``) is read as usual. stdout and
    stderr are captured together in ``.stdout`` of the result.
    """
    if cluster is None:
        cluster, reason = find_slurm_cluster()
        if cluster is None:
            raise RuntimeError(reason)
    workdir = Path(workdir)
    overlay = write_ci_profile(workdir / ".ci_slurm_profile", cluster)
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(snakefile),
        "--directory", str(workdir),
        "--profile", str(cluster.profile),
        "--profile", str(overlay),
    ]
    cmd += [*targets]  # before the options: --configfile takes several values and would swallow them
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += [*extra_args]
    env = dict(os.environ)
    env["LEMMSE_SLURM_GPUS"] = "0"
    # the jobs run `python -m snakemake` from this environment; keep its bin/ first on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout, check=False,
    )


def slurm_job_ids(workdir: Path) -> dict[str, set[str]]:
    """SLURM job ids per log folder (``rule_<name>`` or ``group_<group>_<rules>``) under ``workdir``."""
    logs = Path(workdir) / ".snakemake" / "slurm_logs"
    ids: dict[str, set[str]] = {}
    for log in logs.rglob("*.log"):
        if log.stem.isdigit():
            ids.setdefault(log.relative_to(logs).parts[0], set()).add(log.stem)
    return ids
