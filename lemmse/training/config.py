"""The typed training configuration and its resolution against the training data.

:class:`TrainConfig` holds everything that determines the trained weights (task and operator,
pre-inverse, architecture, σ range, optimisation, seed). :func:`resolve_config` validates it
against the training images — every problem raises :class:`~lemmse.errors.LemmseInputError`
naming the value — and returns the *resolved* config: a plain JSON-ready dict with defaults
filled in (operator parameters, full model options) plus what the data fixes (channels, image
size, training-set size and a SHA-256 of the images). That dict is written as
``training_options.json`` before step 1, stored in every checkpoint and compared on resume.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lemmse.errors import LemmseInputError
from lemmse.models import options_dict, resolve_options, validate_patch
from lemmse.operators import make_problem
from lemmse.training.sampling import SIGMA_SAMPLINGS
from lemmse.training.sigma_spec import format_sigma_spec

#: Version of the resolved-config / checkpoint layout.
FORMAT = "lemmse.train/2"  # 2: the network is wrapped in ScaledInput


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (devices and logging aside).

    σ is fixed when ``sigma_min == sigma_max``, otherwise drawn per sample from
    ``[sigma_min, sigma_max]``, uniformly (the paper: a noise-conditioned network over [0, 1]) or
    log-uniformly (``sigma_sampling``, :mod:`lemmse.training.sampling`).
    The learning rate follows a cosine from ``lr`` at step 1 to ``lr_min`` at ``steps`` (AdamW,
    decoupled weight decay ``weight_decay``; 0 makes it plain Adam). EMA
    weights equal the weights up to ``ema_start``, then every ``ema_every`` steps
    ``ema ← d·ema + (1-d)·w`` with ``d = ema_decay``.
    """

    task: str = "denoising"
    preinverse: str = "identity"
    lam: float | None = None
    hole: int | None = None
    blur_std: float | None = None
    arch: str = "unet"
    patch: int = 5
    preset: str = "small"
    model_options: dict[str, Any] = field(default_factory=dict)
    sigma_min: float = 0.0
    sigma_max: float = 1.0
    sigma_sampling: str = "uniform"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    lr_min: float = 1e-6
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_start: int = 1000
    ema_every: int = 5
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0

    @property
    def sigma_spec(self) -> str:
        """The ``sigma{spec}`` path component: see :func:`format_sigma_spec`."""
        return format_sigma_spec(self.sigma_min, self.sigma_max, self.sigma_sampling)


#: Keys of the resolved config that may change between a run and its resumption.
RESUMABLE_KEYS = ("checkpoint_every", "log_every")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LemmseInputError(f"{name}={value!r} must be an integer >= {minimum}")


def _check_number(name: str, value: Any, *, low: float, high: float = math.inf,
                  low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        upper = "" if high == math.inf else f" and <= {high}"
        raise LemmseInputError(f"{name}={value!r} must be a finite number {bound}{upper}")


def check_images(images: np.ndarray) -> None:
    """Training images: a finite float array ``(N, C, H, W)`` with N >= 1."""
    if images.ndim != 4 or images.shape[0] < 1:
        raise LemmseInputError(f"training images must have shape (N, C, H, W) with N >= 1, got {images.shape}")
    if images.dtype.kind != "f":
        raise LemmseInputError(f"training images must be floats, got dtype {images.dtype}")
    if not np.isfinite(images).all():
        raise LemmseInputError("training images contain NaN or inf")


def validate(config: TrainConfig, image_size: tuple[int, int] | None = None) -> None:
    """Raise :class:`LemmseInputError` naming the first bad value of ``config``."""
    for name in ("sigma_min", "sigma_max"):
        _check_number(name, getattr(config, name), low=0.0)
    if config.sigma_min > config.sigma_max:
        raise LemmseInputError(f"sigma range is empty: sigma_min={config.sigma_min} > sigma_max={config.sigma_max}")
    if config.sigma_sampling not in SIGMA_SAMPLINGS:
        raise LemmseInputError(f"sigma_sampling={config.sigma_sampling!r}: choose one of {', '.join(SIGMA_SAMPLINGS)}")
    if config.sigma_sampling == "log-uniform" and config.sigma_min <= 0:
        raise LemmseInputError(f"sigma_sampling='log-uniform' needs sigma_min > 0, got sigma_min={config.sigma_min}")
    _check_int("steps", config.steps, 1)
    _check_int("batch_size", config.batch_size, 1)
    _check_number("lr", config.lr, low=0.0, low_open=True)
    _check_number("lr_min", config.lr_min, low=0.0, high=config.lr)
    _check_number("weight_decay", config.weight_decay, low=0.0)
    _check_number("grad_clip", config.grad_clip, low=0.0, low_open=True)
    _check_number("ema_decay", config.ema_decay, low=0.0, high=1.0)
    _check_int("ema_start", config.ema_start, 0)
    _check_int("ema_every", config.ema_every, 1)
    _check_int("checkpoint_every", config.checkpoint_every, 1)
    _check_int("log_every", config.log_every, 1)
    _check_int("seed", config.seed, 0)
    validate_patch(config.patch, image_size)
    resolve_options(config.arch, config.patch, config.preset, config.model_options)
    if image_size is not None:
        problem = make_problem(config.task, image_size, hole=config.hole, blur_std=config.blur_std)
        problem.preinverse(config.preinverse, config.lam)


def data_hash(images: np.ndarray) -> str:
    """SHA-256 of the float32 C-ordered image bytes (identifies the training set)."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.float32).tobytes()).hexdigest()


def resolve_config(config: TrainConfig, images: np.ndarray) -> dict[str, Any]:
    """Validate ``config`` against ``images`` ``(N, C, H, W)``; return the resolved JSON-ready dict."""
    if not isinstance(config, TrainConfig):
        raise LemmseInputError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_images(images)
    n, c, h, w = (int(s) for s in images.shape)
    validate(config, (h, w))
    problem = make_problem(config.task, (h, w), hole=config.hole, blur_std=config.blur_std)
    resolved = dataclasses.asdict(config)
    resolved["model_options"] = options_dict(
        resolve_options(config.arch, config.patch, config.preset, config.model_options))
    if config.task == "inpainting":
        resolved["hole"] = int(problem.hole)
    if config.task == "deconvolution":
        resolved["blur_std"] = float(problem.blur_std)
    resolved.update(format=FORMAT, channels=c, image_size=[h, w], train_size=n, data_sha256=data_hash(images))
    return resolved


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every key that differs (ignoring :data:`RESUMABLE_KEYS`)."""
    keys = sorted((set(old) | set(new)) - set(RESUMABLE_KEYS))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
