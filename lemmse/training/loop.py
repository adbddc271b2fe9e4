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

Time limits and pre-emption: while :func:`train` runs in the main thread, ``SIGUSR1`` (what
SLURM sends ahead of the time limit with ``--signal=USR1@<seconds>``) and ``SIGTERM`` (what it
sends at the time limit and on pre-emption, ``KillWait`` seconds before ``SIGKILL``) only set a
flag. The step in progress finishes, ``model.pt`` is saved at that step and
:class:`TrainingInterrupted` is raised; its ``exit_code`` (75, ``EX_TEMPFAIL``: try again) is
what the workflow script exits with, so Snakemake resubmits the job (``retries``) and the next
attempt resumes from that checkpoint, bitwise as above. The previous handlers are restored on
return.

Precision and determinism (:func:`set_precision`, the one place these flags are set): float32
everywhere, TF32 off on CUDA, so the network is the float32 function the theory is compared
with. On CUDA also ``torch.use_deterministic_algorithms(True)``, cuDNN ``deterministic=True`` /
``benchmark=False`` and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (cuBLAS picks a fixed reduction
order only with a fixed workspace; the variable must be set before the first cuBLAS call, so it
is set here when absent). Then a run repeated on the same GPU model, driver and PyTorch version
is bitwise repeatable and resumes bitwise; a run on another GPU model or on the CPU is not
bitwise the same (other kernels, other summation orders), only equal to float32 rounding.
Operations without a deterministic CUDA kernel raise instead of silently varying.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from lemmse.errors import LemmseInputError
from lemmse.models import build_model, count_parameters, resolve_options
from lemmse.models.preconditioning import Preconditioned
from lemmse.operators import make_problem
from lemmse.progress import progress_bar
from lemmse.store import require_writable, writing
from lemmse.training.checkpoint import (CHECKPOINT, OPTIONS, STATS, load_checkpoint, save_checkpoint,
                                        write_options)
from lemmse.training.config import TrainConfig, config_differences, resolve_config
from lemmse.training.loss import MeasurementLoss
from lemmse.training.sampling import SampleStream

log = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the last checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """A stop signal arrived; ``model.pt`` holds step ``step``. Resume to continue (bitwise)."""

    #: Exit status for a process stopped this way: EX_TEMPFAIL (sysexits.h), "try again later".
    exit_code = 75

    def __init__(self, run_dir: Path, step: int, signum: int) -> None:
        self.run_dir, self.step, self.signum = run_dir, step, signum
        super().__init__(f"{signal.Signals(signum).name} received: checkpoint of step {step} saved in "
                         f"{run_dir}; rerun with resume to continue")


#: Signals that make :func:`train` checkpoint and stop (see the module docstring).
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


@contextmanager
def _stop_flag(signals: Sequence[int]) -> Iterator[list[int]]:
    """A list that receives the number of each stop signal, while ``signals`` only append to it.

    Outside the main thread (where Python cannot install handlers) the list stays empty.
    """
    received: list[int] = []
    if not signals or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame) -> None:
        log.warning("%s received: finishing the current step, then checkpointing",
                    signal.Signals(signum).name)
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    loss: float | None
    model: torch.nn.Module  # the EMA network, in eval mode
    config: dict[str, Any]


def set_precision(device: str | torch.device = "cpu") -> None:
    """The one place precision and determinism flags are set (see the module docstring).

    Always: true float32 matmuls and convolutions (no TF32). On CUDA also deterministic
    algorithms, deterministic cuDNN without autotuning, and a fixed cuBLAS workspace.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


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


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters, as one fused kernel per step (CPU and CUDA).

    The for-loop implementation runs about ten small operations per parameter tensor; the UNet's 54
    tensors then cost 1.4 ms a step on one core against 0.23 ms fused (ResNet 0.36 against 0.08), a
    few percent of the small presets' steps. Same update rule, another rounding order.
    """
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


@dataclass(frozen=True)
class _Tensors:
    """A module's parameters and buffers as lists, gathered once (walking the module tree each step
    costs more than the EMA's own arithmetic on the small presets)."""

    parameters: list[torch.Tensor]
    buffers: list[torch.Tensor]

    @classmethod
    def of(cls, module: torch.nn.Module) -> "_Tensors":
        return cls(list(module.parameters()), list(module.buffers()))


@torch.no_grad()
def _update_ema(ema: _Tensors, model: _Tensors, step: int, config: dict[str, Any]) -> None:
    """``e ← e + w (p - e) = (1 - w) e + w p`` for every parameter: ``w = 1`` (a copy) up to
    ``ema_start``, then ``1 - ema_decay`` every ``ema_every`` steps; buffers are copied."""
    if step <= config["ema_start"]:
        torch._foreach_copy_(ema.parameters, model.parameters)
    elif step % config["ema_every"] == 0:
        torch._foreach_lerp_(ema.parameters, model.parameters, 1.0 - config["ema_decay"])
    if ema.buffers:
        torch._foreach_copy_(ema.buffers, model.buffers)


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
          resume: bool = False, stop_after: int | None = None, progress: bool = False,
          stop_signals: Sequence[int] = STOP_SIGNALS) -> TrainResult:
    """Train ``config`` on ``images`` (``(N, C, H, W)`` floats in [0, 1]) into ``run_dir``.

    ``resume``: continue from ``run_dir/model.pt`` (a fresh start when there is none); without it
    an existing checkpoint is refused rather than overwritten. ``stop_after``: return after that
    step as if the process were killed there (for tests; nothing extra is saved).
    ``stop_signals``: signals that checkpoint the step in progress and raise
    :class:`TrainingInterrupted` (``()``: leave signal handling alone).
    """
    images = _as_array(images)
    resolved = resolve_config(config, images)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LemmseInputError(f"device {str(device)!r} requested but CUDA is not available")
    run_dir = Path(run_dir)
    require_writable(run_dir, "training run into")
    with writing(run_dir, "training run folder"):
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

    set_precision(device)
    model = model_from_config(resolved).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = make_optimizer(model, resolved["lr"], resolved.get("weight_decay", 0.0))
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
    model_tensors, ema_tensors = _Tensors.of(model), _Tensors.of(ema)
    began = time.monotonic()
    model.train()
    with writing(stats_file, "training log"), stats_file.open("a") as stats, _stop_flag(stop_signals) as stop:
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
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model_tensors.parameters, resolved["grad_clip"]))
            if not math.isfinite(grad_norm):
                raise TrainingDivergedError(f"non-finite gradient norm {grad_norm} at step {step}; "
                                            f"the last good checkpoint in {run_dir} is kept")
            optimizer.step()
            _update_ema(ema_tensors, model_tensors, step, resolved)
            window = [window[0] + value, window[1] + 1]
            if step % resolved["log_every"] == 0 or step == steps:
                logged_loss = window[0] / window[1]
                stats.write(json.dumps({"step": step, "loss": logged_loss, "lr": lr, "grad_norm": grad_norm,
                                        "seconds": round(time.monotonic() - began, 3)}) + "\n")
                stats.flush()
                window = [0.0, 0]
            if step % resolved["checkpoint_every"] == 0 or step == steps:
                checkpoint(step)
            elif stop:
                checkpoint(step)
            if stop and step < steps:
                stats.flush()
                log.warning("stopped by %s after step %d of %d; checkpoint saved",
                            signal.Signals(stop[0]).name, step, steps)
                raise TrainingInterrupted(run_dir, step, stop[0])
    if last == steps and start == steps:
        log.info("%s is already trained (%d steps)", run_dir, steps)
    return TrainResult(run_dir, last, logged_loss, ema, resolved)
