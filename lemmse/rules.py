"""Glue for the workflow's thin scripts: logging into the rule's log file, threads, device.

Each ``scripts/<rule>.py`` does ``job = start(snakemake)`` — its record, handed over by the rule
(``params: job=…``, :mod:`lemmse.plan.jobs`) — and then calls one lemmse function. The aggregating
jobs receive the plan itself (``snakemake.params.plan``); no job rebuilds it from the config.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from lemmse.plan.sweep import Plan
from lemmse.plan.training import arch_training, training_steps


def start(snakemake) -> Any:
    """Send every ``lemmse`` log record to the rule's ``log:`` file, set threads; return the job's
    record (``snakemake.params.job``; ``None`` for a rule that passes none).

    glibc's ``malloc`` keeps freed memory for the job (:func:`lemmse.allocator.retain_freed_memory`:
    training steps and estimator passes stop re-faulting their buffers' pages). Every output's
    folder is checked first (:func:`lemmse.store.require_writable`), so a
    read-only or misplaced results folder fails before the job's work, naming the path.
    """
    from lemmse.allocator import retain_freed_memory
    from lemmse.store import require_writable

    retain_freed_memory()
    for output in snakemake.output:
        require_writable(output, "output")

    log_file = Path(snakemake.log[0])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    sys.excepthook = _log_then_raise  # a failing job's traceback lands in its log file too
    set_threads(int(snakemake.threads))
    logging.getLogger("lemmse.rules").info("rule %s, wildcards %s, %d thread(s)", snakemake.rule,
                                           dict(snakemake.wildcards), snakemake.threads)
    return getattr(snakemake.params, "job", None)


def set_threads(threads: int) -> None:
    """Cap the job's compute threads at its Snakemake ``threads`` without importing PyTorch.

    The OpenMP/BLAS variables bind PyTorch (and NumPy's BLAS) when the job imports them later; a
    job that already imported PyTorch is capped directly. Jobs that never touch a network or an
    estimator (templates, tables, figures) so skip PyTorch's import, about a second and a half each.
    """
    threads = max(1, threads)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _log_then_raise(kind, value, traceback) -> None:
    logging.getLogger("lemmse.rules").error("job failed", exc_info=(kind, value, traceback))
    sys.__excepthook__(kind, value, traceback)


def device() -> str:
    """``cuda`` when the job sees a GPU (SLURM GPU jobs), else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def config_label(plan: Plan) -> str:
    """A short description of the configuration, for figure titles and the claims report."""
    config = plan.config
    datasets = ", ".join(config["datasets"])
    t = config["training"]

    def budget(settings) -> str:
        return (f"{settings['epochs']:g} epochs" if settings.get("epochs") is not None
                else f"{training_steps(settings, 0)} training steps")

    per_arch = "".join(f", {arch}: {budget(arch_training(t, arch))}" for arch in t.get("arch_budget", {}))
    return (f"data: {datasets}; {config['measurements']['n_eval']} images/split; "
            f"{budget(t)}{per_arch} ({t['preset']} preset)")
