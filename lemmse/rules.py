"""Glue for the workflow's thin scripts: logging into the rule's log file, threads, device, plan.

Each ``scripts/<rule>.py`` does ``plan = start(snakemake)`` and then calls one lemmse function.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from lemmse.sweep import Plan, make_plan, training_steps


def start(snakemake) -> Plan:
    """Send every ``lemmse`` log record to the rule's ``log:`` file, set threads, build the plan."""
    import torch

    log_file = Path(snakemake.log[0])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    sys.excepthook = _log_then_raise  # a failing job's traceback lands in its log file too
    torch.set_num_threads(max(1, int(snakemake.threads)))
    logging.getLogger("lemmse.rules").info("rule %s, wildcards %s, %d thread(s)", snakemake.rule,
                                           dict(snakemake.wildcards), snakemake.threads)
    return make_plan(snakemake.config)


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
    budget = f"{t['epochs']:g} epochs" if t.get("epochs") is not None else f"{training_steps(t, 0)} training steps"
    return (f"data: {datasets}; {config['measurements']['n_eval']} images/split; "
            f"{budget} ({t['preset']} preset)")
