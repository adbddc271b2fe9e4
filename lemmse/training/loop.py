r"""``train(run_dir, config, images)``: the one training entry point.

Per step ``s = 1 … steps``: take the samples of :class:`~lemmse.training.sampling.SampleStream`,
form ``B(A x + σ ε)``, minimise the MSE of :class:`~lemmse.training.loss.MeasurementLoss` with
AdamW at the cosine learning rate

.. math::

    η_s = η_{\min} + (η - η_{\min})\,\tfrac12\bigl(1 + \cos(π \tfrac{s-1}{\mathrm{steps}-1})\bigr),

clip the gradient norm to ``grad_clip`` and update the EMA weights. ``run_dir`` receives
``training_options.json`` (the resolved config, before step 1), ``stats.jsonl`` (one JSON line
every ``log_every`` steps: mean loss over those steps, learning rate, gradient norm before
clipping, elapsed seconds) and ``model.pt`` (every ``checkpoint_every`` steps and at the end;
keys in :mod:`lemmse.training.checkpoint`).

Resuming (``resume=True``) loads ``model.pt``, refuses it if its config differs from this one
(naming the keys), drops ``stats.jsonl`` lines past its step and continues: since step ``s``
depends only on ``(seed, s)`` and the restored state, the result is bitwise the one of an
uninterrupted run on the same device. A non-finite loss or gradient norm raises
:class:`TrainingDivergedError` before the weights change; the last checkpoint stays as it was.

Precision: float32 everywhere; TF32 is switched off on CUDA (:func:`set_precision`) so the
network is the float32 function the theory is compared with.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lemmse.errors import LemmseInputError
from lemmse.models import build_model, count_parameters, resolve_options
from lemmse.models.preconditioning import Preconditioned
from lemmse.operators import make_problem
from lemmse.progress import progress_bar
from lemmse.training.checkpoint import (CHECKPOINT, OPTIONS, STATS, load_checkpoint, save_checkpoint,
                                        write_options)
from lemmse.training.config import TrainConfig, config_differences, resolve_config
from lemmse.training.loss import MeasurementLoss
from lemmse.training.sampling import SampleStream

log = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the last checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    loss: float | None
    model: torch.nn.Module  # the EMA network, in eval mode
    config: dict[str, Any]


def set_precision() -> None:
    """The one place precision flags are set: true float32 matmuls and convolutions."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def cosine_lr(step: int, steps: int, lr: float, lr_min: float) -> float:
    if steps <= 1:
        return lr
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / (steps - 1)))


def model_from_config(config: dict[str, Any]) -> torch.nn.Module:
    """The (freshly initialised, seeded) network a resolved config describes, on the CPU.

    The architecture is wrapped in :class:`~lemmse.models.preconditioning.Preconditioned` with
    the noise gain ``κ`` of the configured pre-inverse (input scale and skip set by ``κσ²``).
    """
    options = resolve_options(config["arch"], config["patch"], config["preset"], config["model_options"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        net = build_model(config["arch"], config["channels"], config["patch"], options)
    return Preconditioned(net, problem_from_config(config)[1].noise_gain())


def problem_from_config(config: dict[str, Any]):
    """``(A, B)``: the task's :class:`~lemmse.operators.InverseProblem` and its pre-inverse."""
    problem = make_problem(config["task"], tuple(config["image_size"]), hole=config.get("hole"),
                           blur_std=config.get("blur_std"))
    return problem, problem.preinverse(config["preinverse"], config.get("lam"))


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, config: dict[str, Any]) -> None:
    if step <= config["ema_start"]:
        weight = 1.0
    elif step % config["ema_every"] == 0:
        weight = 1.0 - config["ema_decay"]
    else:
        weight = 0.0
    for e, p in zip(ema.parameters(), model.parameters()):
        if weight == 1.0:
            e.copy_(p)
        elif weight:
            e.lerp_(p, weight)  # e ← e + (1-d)(p - e) = d·e + (1-d)·p
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _rng_state() -> dict[str, Any]:
    cuda = [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_stats(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _as_array(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    return np.asarray(images)


def train(run_dir: str | Path, config: TrainConfig, images, *, device: str | torch.device = "cpu",
          resume: bool = False, stop_after: int | None = None, progress: bool = False) -> TrainResult:
    """Train ``config`` on ``images`` (``(N, C, H, W)`` floats in [0, 1]) into ``run_dir``.

    ``resume``: continue from ``run_dir/model.pt`` (a fresh start when there is none); without it
    an existing checkpoint is refused rather than overwritten. ``stop_after``: return after that
    step as if the process were killed there (for tests; nothing extra is saved).
    """
    images = _as_array(images)
    resolved = resolve_config(config, images)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LemmseInputError(f"device {str(device)!r} requested but CUDA is not available")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_file, stats_file = run_dir / CHECKPOINT, run_dir / STATS

    state = None
    if ckpt_file.exists():
        if not resume:
            raise LemmseInputError(f"{ckpt_file} already exists; resume it or choose another directory")
        state = load_checkpoint(ckpt_file, map_location="cpu")  # RNG states must stay CPU tensors
        diff = config_differences(state["config"], resolved)
        if diff:
            raise LemmseInputError(f"checkpoint {ckpt_file} was made with another config ({'; '.join(diff)})")

    set_precision()
    model = model_from_config(resolved).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=resolved["lr"], weight_decay=resolved.get("weight_decay", 0.0))
    start, window = 0, [0.0, 0]
    if state is None:
        write_options(run_dir / OPTIONS, resolved)
        stats_file.write_text("")
    else:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        _restore_rng(state["rng"])
        start, window = int(state["step"]), list(state.get("log_window", [0.0, 0]))
        _truncate_stats(stats_file, start)
        log.info("resuming %s at step %d of %d", run_dir, start, resolved["steps"])
    ema.eval()

    problem, preinverse = problem_from_config(resolved)
    loss_fn = MeasurementLoss(problem, preinverse).to(device)
    data = torch.as_tensor(images, dtype=torch.float32).to(device)
    stream = SampleStream(resolved["train_size"], tuple(data.shape[1:]), resolved["batch_size"],
                          resolved["sigma_min"], resolved["sigma_max"], resolved["seed"],
                          resolved.get("sigma_sampling", "uniform"))
    steps = resolved["steps"]
    last = steps if stop_after is None else min(steps, max(stop_after, start))
    log.info("training %s P=%d (%d parameters) on %d images for steps %d..%d on %s",
             resolved["arch"], resolved["patch"], count_parameters(model), resolved["train_size"],
             start + 1, last, device)

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_file, {
            "format": resolved["format"], "config": resolved, "step": step,
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": _rng_state(), "log_window": window, "device": str(device),
            "torch_version": str(torch.__version__)})

    logged_loss = None
    began = time.monotonic()
    model.train()
    with stats_file.open("a") as stats:
        for step in progress_bar(range(start + 1, last + 1), enabled=progress, desc="train", unit="step"):
            indices, sigma, noise = stream.batch(step)
            x = data[indices.to(device)]
            lr = cosine_lr(step, steps, resolved["lr"], resolved["lr_min"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, sigma.to(device), noise.to(device))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingDivergedError(f"non-finite loss {value} at step {step}; "
                                            f"the last good checkpoint in {run_dir} is kept")
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), resolved["grad_clip"]))
            if not math.isfinite(grad_norm):
                raise TrainingDivergedError(f"non-finite gradient norm {grad_norm} at step {step}; "
                                            f"the last good checkpoint in {run_dir} is kept")
            optimizer.step()
            _update_ema(ema, model, step, resolved)
            window = [window[0] + value, window[1] + 1]
            if step % resolved["log_every"] == 0 or step == steps:
                logged_loss = window[0] / window[1]
                stats.write(json.dumps({"step": step, "loss": logged_loss, "lr": lr, "grad_norm": grad_norm,
                                        "seconds": round(time.monotonic() - began, 3)}) + "\n")
                stats.flush()
                window = [0.0, 0]
            if step % resolved["checkpoint_every"] == 0 or step == steps:
                checkpoint(step)
    if last == steps and start == steps:
        log.info("%s is already trained (%d steps)", run_dir, steps)
    return TrainResult(run_dir, last, logged_loss, ema, resolved)
