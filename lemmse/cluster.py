r"""The SLURM side of a run: what the cluster offers, how to poll it, and what each job needs.

Read by ``slurm/config.yaml`` (a yte template, evaluated once when snakemake starts on the
login node) and by the workflow's resource functions (``workflow/rules/common.smk``). Nothing
here imports Snakemake.

**Job status** (:func:`status_command`). The SLURM executor plugin polls with ``sacct`` when the
binary exists, but ``sacct`` cannot answer on a cluster without accounting storage
(``AccountingStorageType=accounting_storage/none``: "Slurm accounting storage is disabled"),
and the plugin then drops the jobs from its watch list and waits forever. So the profile asks
``scontrol show config``: with accounting it uses ``sacct``, without it ``squeue`` (which sees
finished jobs for ``MinJobAge`` seconds). Whatever is chosen, or set with
``LEMMSE_SLURM_STATUS_COMMAND``, is run once before anything is submitted; a command that
cannot answer stops the run with :class:`ClusterError`, naming the command and its message.

**What the nodes have** (:func:`partition_limits`): per partition, from ``sinfo``, the largest
node's CPUs, memory and GPUs, capped by the partition's ``MaxCPUsPerNode`` / ``MaxMemPerNode``
(``scontrol show partition``), and its time limit.

**What a job needs** (host memory, MB, rounded up to 256 MB):

.. math::

    \mathrm{train} = M_0 + 3\,D + 32\,n_\theta + 2 \cdot 4\,b \textstyle\sum_\ell |a_\ell|,\qquad
    \mathrm{shard} = M_0 + 2\,D + M_\mathrm{est}

with ``M_0`` = :data:`PROCESS_MB` (Python, PyTorch and the CUDA host libraries), ``D`` the
float32 bytes of the training images (read from the store, copied to a tensor, hashed),
``n_θ`` the parameters (weights, gradients, two Adam moments, EMA, and the copies a checkpoint
makes: 8 float32 copies), ``Σ|a_ℓ|`` the elements every module outputs for one image (counted
by a forward pass on PyTorch's ``meta`` device, which allocates nothing) times the batch ``b``,
twice (forward values kept for the backward pass, and their gradients; left out for GPU jobs,
whose activations live in GPU memory), and ``M_est`` the
configured ``analytic.max_memory_mb`` working-set bound of the estimators.

**Fit** (:func:`require_fit`): a request that no node of its partition can hold would pend
forever (``PartitionConfig``) or be refused by ``sbatch``; it stops the run before submission
instead, naming the rule, the request and the largest node.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Host memory of one job's process before any data: Python, PyTorch, CUDA host libraries (MB).
PROCESS_MB = 2048
#: Requests are rounded up to a multiple of this (MB).
ROUND_MB = 256
#: Rules that get a GPU (and LEMMSE_SLURM_GPU_PARTITION) from the slurm/ profile.
GPU_RULES = ("train_network", "evaluate_network", "analytic_shard")


class ClusterError(RuntimeError):
    """The cluster cannot run the workflow as configured; the message says what to change."""


# --- asking SLURM ----------------------------------------------------------------------------------

def slurm_present() -> bool:
    """``True`` when the SLURM client commands are installed here."""
    return all(shutil.which(cmd) for cmd in ("sinfo", "scontrol", "squeue", "sbatch"))


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return subprocess.CompletedProcess(cmd, 1, "", f"{type(err).__name__}: {err}")


def _ask(*cmd: str) -> str:
    done = _run(*cmd)
    if done.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def slurm_config() -> dict[str, str]:
    """``scontrol show config`` as ``{key: value}``."""
    pairs = (line.split("=", 1) for line in _ask("scontrol", "show", "config").splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _status_probe(command: str) -> tuple[str, ...]:
    """The query the plugin runs with ``command``, for a job name that matches nothing."""
    if command == "sacct":
        return ("sacct", "-X", "--parsable2", "--noheader", "--format=JobIdRaw,State",
                "--starttime", "now-1hours", "--endtime", "now", "--name", "lemmse-status-probe")
    return ("squeue", "--noheader", "--states=all", "--format=%i|%T", "--name", "lemmse-status-probe")


def status_command(requested: str = "", config: dict[str, str] | None = None) -> str:
    """The job-status command that works here: ``requested`` if given, else ``sacct`` when the
    cluster stores accounting, else ``squeue``; checked by running it once.

    Raises :class:`ClusterError` when the command cannot answer (see the module docstring).
    """
    if requested and requested not in ("sacct", "squeue"):
        raise ClusterError(f"LEMMSE_SLURM_STATUS_COMMAND={requested!r}: choose 'sacct' or 'squeue'")
    config = slurm_config() if config is None else config
    storage = config.get("AccountingStorageType", "")
    command = requested or ("squeue" if storage in ("", "accounting_storage/none") else "sacct")
    probe = _status_probe(command)
    done = _run(*probe)
    if done.returncode != 0:
        hint = (" This cluster has no accounting storage (AccountingStorageType="
                f"{storage or 'unset'}): set LEMMSE_SLURM_STATUS_COMMAND=squeue."
                if command == "sacct" else " Is slurmctld reachable (`scontrol ping`)?")
        raise ClusterError(f"job status command {command!r} cannot answer: `{' '.join(probe)}` says "
                           f"{(done.stderr or done.stdout).strip()!r}.{hint}")
    if command == "squeue":
        age = _seconds(config.get("MinJobAge", ""))
        if age is not None and age < 120:
            log.warning("squeue sees finished jobs for only MinJobAge=%d s; with status checks every "
                        "<= 40 s a fast job may vanish unseen (ask for MinJobAge >= 120 or accounting)", age)
    log.info("job status: %s (AccountingStorageType=%s)", command, storage or "unset")
    return command


def _seconds(text: str) -> int | None:
    match = re.match(r"^(\d+)\s*(\w*)", text)
    if not match:
        return None
    return int(match.group(1)) * (3600 if match.group(2).lower() in ("h", "hour", "hours") else 1)


@dataclass(frozen=True)
class PartitionLimits:
    """The largest node of a partition, within the partition's per-node caps; time in minutes."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int
    max_minutes: int | None  # None: no limit


def default_partition() -> str:
    """The partition ``sinfo`` marks with ``*``."""
    names = _ask("sinfo", "--noheader", "--format=%P").split()
    default = next((n.rstrip("*") for n in names if n.endswith("*")), None)
    if default is None:
        raise ClusterError("the cluster has no default partition; set LEMMSE_SLURM_PARTITION")
    return default


def _minutes(text: str) -> int | None:
    """SLURM time ``[D-]HH:MM:SS`` / ``MM:SS`` / ``MM`` / ``infinite`` in minutes (rounded down)."""
    text = text.strip().lower()
    if text in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return (int(days) if days else 0) * 1440 + h * 60 + m + s // 60


def _gpus(gres: str) -> int:
    return sum(int(n) for n in re.findall(r"gpu(?::[\w.-]+)?:(\d+)", gres))


@functools.lru_cache(maxsize=None)
def partition_limits(partition: str = "") -> PartitionLimits:
    """What one job can get in ``partition`` (``""``: the default partition)."""
    name = partition or default_partition()
    rows = _ask("sinfo", "--noheader", "--Node", f"--partition={name}", "--format=%c|%m|%G|%l").splitlines()
    if not rows:
        raise ClusterError(f"partition {name!r} does not exist or has no nodes (`sinfo --partition={name}`)")
    cpus = mem = gpus = 0
    limit = None
    for row in rows:
        c, m, g, t = (field.strip() for field in row.split("|"))
        cpus, mem, gpus = max(cpus, int(c.rstrip("+"))), max(mem, int(m.rstrip("+"))), max(gpus, _gpus(g))
        limit = _minutes(t)
    part = dict(re.findall(r"(\w+)=(\S+)", _ask("scontrol", "show", "partition", name)))
    if part.get("MaxCPUsPerNode", "UNLIMITED").isdigit():
        cpus = min(cpus, int(part["MaxCPUsPerNode"]))
    if part.get("MaxMemPerNode", "UNLIMITED").isdigit():
        mem = min(mem, int(part["MaxMemPerNode"]))
    return PartitionLimits(name, cpus, mem, gpus, limit)


def partition_for(rule: str) -> str:
    """The partition the slurm/ profile sends ``rule`` to (``""``: the cluster's default)."""
    cpu = os.environ.get("LEMMSE_SLURM_PARTITION", "")
    return (os.environ.get("LEMMSE_SLURM_GPU_PARTITION", "") or cpu) if rule in GPU_RULES else cpu


def profile_partitions() -> list[str]:
    """Every partition the profile submits to (``""`` = default), without repeats."""
    return list(dict.fromkeys(partition_for(r) for r in ("any", *GPU_RULES)))


def max_threads() -> int:
    """CPUs of the largest node the profile submits to: the cap on any job's --cpus-per-task."""
    return max(partition_limits(p).cpus for p in profile_partitions())


def runtime(minutes: int, rule: str = "any") -> str:
    """The profile's ``runtime`` expression: ``minutes * attempt`` (more time on each retry),
    capped at the time limit of ``rule``'s partition when there is one (a longer request would
    never start)."""
    limit = partition_limits(partition_for(rule)).max_minutes if slurm_present() else None
    return f"{minutes} * attempt" if limit is None else f"min({minutes} * attempt, {limit})"


def require_gpus(gpus: int) -> None:
    """Stop now if GPU jobs ask for ``gpus`` GPUs but no node of their partition has that many."""
    if gpus <= 0:
        return
    for rule in GPU_RULES:
        limits = partition_limits(partition_for(rule))
        if limits.gpus < gpus:
            raise ClusterError(
                f"GPU jobs ({rule}) ask for {gpus} GPU(s) but the nodes of partition {limits.name!r} have at most "
                f"{limits.gpus}; set LEMMSE_SLURM_GPU_PARTITION to a GPU partition, or LEMMSE_SLURM_GPUS=0")


def require_fit(rule: str, mem_mb: int, what: str) -> int:
    """``mem_mb`` if a node of ``rule``'s partition has that much memory, else :class:`ClusterError`."""
    limits = partition_limits(partition_for(rule))
    if mem_mb > limits.mem_mb:
        raise ClusterError(
            f"rule {rule} needs {mem_mb} MB ({what}) but the largest node of partition {limits.name!r} has "
            f"{limits.mem_mb} MB, so the job could never start; use a partition with larger nodes "
            f"(LEMMSE_SLURM_{'GPU_' if rule in GPU_RULES else ''}PARTITION) or shrink the job")
    return mem_mb


# --- what a job needs --------------------------------------------------------------------------------

def _round(mb: float) -> int:
    return int(math.ceil(mb / ROUND_MB) * ROUND_MB)


@functools.lru_cache(maxsize=None)
def _model_footprint(arch: str, patch: int, preset: str, options: str, channels: int, size: int) -> tuple[int, int]:
    """``(parameters, activation elements per image)`` of a network, from a ``meta``-device pass."""
    import torch

    from lemmse.models import build_model, count_parameters, resolve_options

    with torch.device("meta"):
        net = build_model(arch, channels, patch, resolve_options(arch, patch, preset, json.loads(options)))
        total = [0]

        def count(module, args, out):
            if isinstance(out, torch.Tensor):
                total[0] += out.numel()

        hooks = [m.register_forward_hook(count) for m in net.modules()]
        net(torch.zeros(1, channels, size, size), torch.zeros(1))
        for hook in hooks:
            hook.remove()
    return count_parameters(net), total[0]


def training_memory_mb(arch: str, patch: int, preset: str, model_options: dict, *, channels: int,
                       resolution: int, train_size: int, batch_size: int, activations_on_host: bool = True) -> int:
    """Host memory (MB) of one training job (formula in the module docstring).

    ``activations_on_host=False`` (a GPU job) leaves out the activations: they live on the GPU.
    """
    params, activations = _model_footprint(arch, patch, preset, json.dumps(model_options, sort_keys=True),
                                           channels, resolution)
    data = train_size * channels * resolution**2 * 4
    activation_bytes = 2 * 4 * batch_size * activations if activations_on_host else 0
    return _round(PROCESS_MB + (3 * data + 32 * params + activation_bytes) / 2**20)


def shard_memory_mb(max_memory_mb: int, *, channels: int, resolution: int, train_size: int) -> int:
    """Host memory (MB) of one estimator shard (formula in the module docstring)."""
    data = train_size * channels * resolution**2 * 4
    return _round(PROCESS_MB + max_memory_mb + 2 * data / 2**20)


__all__ = [
    "ClusterError", "PartitionLimits", "status_command", "partition_limits", "partition_for", "max_threads",
    "runtime", "require_gpus", "require_fit", "training_memory_mb", "shard_memory_mb", "slurm_present",
]
