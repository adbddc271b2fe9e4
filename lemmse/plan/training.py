r"""The training settings of each network of a sweep, from the config's ``training`` section.

One place decides a network's optimiser steps (:func:`training_steps`: steps, or epochs × N /
batch), its per-architecture budget (:func:`arch_training`), its model options
(:func:`model_options`) and the whole :class:`lemmse.training.config.TrainConfig`
(:func:`training_config`) — the training job, the cost model and the memory sizing all read these.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from lemmse.plan.config import preinverse_options, task_options
from lemmse.plan.records import NetworkRun

#: Steps of a network when the config gives neither ``training.steps`` nor ``training.epochs``.
DEFAULT_STEPS = 1000


def arch_training(training: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """The ``training`` settings of ``arch``: the shared ones with ``training.arch_budget[arch]`` on top.

    A budget in steps replaces shared epochs and vice versa, so each architecture has exactly one.
    """
    budget = dict(training.get("arch_budget", {}).get(arch, {}))
    merged = {**training, **budget}
    if "steps" in budget:
        merged["epochs"] = None
    if "epochs" in budget:
        merged["steps"] = None
    return merged


def training_steps(training: Mapping[str, Any], train_size: int) -> int:
    """Optimiser steps of a network trained on ``train_size`` images.

    ``training.steps`` if given, else ``⌈epochs · N / batch_size⌉`` (at least 1): the paper trains
    for a number of epochs, so its N = 100 networks take far fewer steps than its N = 50000 ones.
    """
    if training.get("epochs") is not None:
        return max(1, math.ceil(training["epochs"] * train_size / training["batch_size"]))
    return int(training["steps"]) if training.get("steps") is not None else DEFAULT_STEPS


def model_options(training: Mapping[str, Any], dataset: str, arch: str) -> dict[str, Any]:
    """Option overrides of ``arch`` on ``dataset``: ``training.model_options[arch]``, then
    ``training.dataset_model_options[dataset][arch]`` (e.g. the paper's wider UNet at 64×64)."""
    options = dict(training["model_options"].get(arch, {}))
    options.update(training.get("dataset_model_options", {}).get(dataset, {}).get(arch, {}))
    return options


def training_config(config: dict, run: NetworkRun):
    """The :class:`lemmse.training.config.TrainConfig` of one network of the sweep (its σ from
    ``run.noise``, every other setting from ``training`` with ``training.arch_budget[arch]`` on top)."""
    from lemmse.training.config import TrainConfig

    t = arch_training(config["training"], run.arch)
    pre = preinverse_options(config, run.preinverse)
    return TrainConfig(task=run.task, preinverse=pre["preinverse"], lam=pre["lam"], **task_options(config, run.task),
                       arch=run.arch, patch=run.patch, preset=t["preset"],
                       model_options=model_options(t, run.dataset, run.arch),
                       sigma_min=run.noise.low, sigma_max=run.noise.high, sigma_sampling=run.noise.sampling,
                       steps=training_steps(t, run.train_size),
                       batch_size=t["batch_size"], lr=t["lr"], lr_min=t["lr_min"], weight_decay=t["weight_decay"],
                       grad_clip=t["grad_clip"], ema_decay=t["ema_decay"], ema_start=t["ema_start"],
                       ema_every=t["ema_every"], checkpoint_every=t["checkpoint_every"], seed=config["seed"])
