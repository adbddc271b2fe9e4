"""Forward operators ``A`` and pre-inverses ``B`` for denoising, inpainting and deconvolution."""
from __future__ import annotations

from lemmse.errors import LemmseInputError
from lemmse.operators.base import PREINVERSES, InverseProblem
from lemmse.operators.deconvolution import Deconvolution, gaussian_kernel
from lemmse.operators.denoising import Denoising
from lemmse.operators.inpainting import Inpainting, centred_hole_mask
from lemmse.operators.linear_maps import CircularConvolution, CircularLinearMap, PixelWeights

TASKS = ("denoising", "inpainting", "deconvolution")


def make_problem(task: str, image_size: tuple[int, int], *, hole: int | None = None,
                 blur_std: float | None = None) -> InverseProblem:
    """Build the task's operator for ``image_size = (H, W)``.

    ``hole`` (inpainting, default :func:`default_hole`) and ``blur_std``
    (deconvolution, default 1.0) are rejected for tasks that do not use them.
    """
    if task not in TASKS:
        raise LemmseInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task != "inpainting" and hole is not None:
        raise LemmseInputError(f"hole={hole!r} given but task {task!r} has no hole")
    if task != "deconvolution" and blur_std is not None:
        raise LemmseInputError(f"blur_std={blur_std!r} given but task {task!r} has no blur")
    if task == "denoising":
        return Denoising(image_size)
    if task == "inpainting":
        return Inpainting(image_size, default_hole(image_size) if hole is None else hole)
    return Deconvolution(image_size, 1.0 if blur_std is None else blur_std)


def preinvert(y, task: str, preinverse: str, lam: float | None = None, *, hole: int | None = None,
              blur_std: float | None = None):
    """``B y`` for measurements ``y`` of shape ``(..., c, h, w)`` (numpy), in float64 — THE one place the
    pipeline applies a pre-inverse to stored measurements: each estimator shard, once, with its
    estimator's B (:func:`lemmse.analytic.shard_summaries`), which stores it as ``by`` for ``psnr_input``
    and the figures' ``B y`` panels. ``preinverse``/``lam``: the kind and λ of B; ``hole``/``blur_std``:
    the task's operator exactly as configured (``lemmse.plan.config.task_options``).
    """
    import numpy as np
    import torch

    y = np.asarray(y)
    problem = make_problem(task, (y.shape[-2], y.shape[-1]), hole=hole, blur_std=blur_std)
    B = problem.preinverse(preinverse, lam)
    with torch.no_grad():
        out = B(torch.from_numpy(y.reshape(-1, *y.shape[-3:]).astype(np.float64)))
    return out.numpy().reshape(y.shape)


def default_hole(image_size: tuple[int, int]) -> int:
    """The paper's hole scaled to the grid: 15 on 32×32, 7 on 16×16 (``min(H, W)//2 - 1``)."""
    return min(image_size) // 2 - 1


__all__ = [
    "TASKS", "PREINVERSES", "InverseProblem", "Denoising", "Inpainting", "Deconvolution",
    "CircularConvolution", "CircularLinearMap", "PixelWeights", "make_problem", "preinvert", "default_hole",
    "gaussian_kernel", "centred_hole_mask",
]
