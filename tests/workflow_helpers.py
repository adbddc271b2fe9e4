"""Running the real workflow from tests: a scratch working directory and a snakemake call.

The working directory gets a ``config`` link to the repository's configs (the Snakefile's
``configfile:`` is relative to it), so ``results/`` and ``.snakemake/`` stay inside the scratch
folder and never touch the repository's own.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
TINY = REPO / "config" / "test_tiny.yaml"


def make_workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    link = path / "config"
    if not link.exists():
        link.symlink_to(REPO / "config", target_is_directory=True)
    return path


def snakemake(workdir: Path, *args: str, configfile: Path = TINY, timeout: float = 1200,
              popen: bool = False):
    """``snakemake --snakefile ... --directory workdir --configfile ... args`` (captured output), a local run.

    ``SLURM_CONF`` is the empty file: the SLURM executor plugin runs ``scontrol show config`` when
    Snakemake starts, which waits 9 s where ``slurm.conf`` names a controller that is not running (a
    developer's machine between CI runs); a local run never talks to SLURM, and with an empty
    configuration ``scontrol`` fails at once. The SLURM tests run through ``fixtures_slurm``."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(configfile), *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "SLURM_CONF": os.devnull}
    if popen:  # output to a file: an unread pipe would block snakemake once full
        with open(workdir / "snakemake-background.log", "a") as out:
            return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    return subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)


def job_counts(output: str) -> dict[str, int]:
    """The ``Job stats`` table of a snakemake run or dry run, rule -> count (``{}``: nothing to do)."""
    counts: dict[str, int] = {}
    if "Job stats:" not in output:
        return counts
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"\s*(\S+)\s+(\d+)\s*", line)
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts
