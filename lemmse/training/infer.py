r"""Network outputs on the measurement grid: ``x̂ = f_θ(B y, σ)`` for every ``(split, image, σ)``.

Input: a measurement store ``…/measurements/{dataset}/{task}.zarr`` holding ``y`` float32 with
dims ``(split, image, sigma, c, h, w)`` and attrs ``task`` (plus ``hole`` / ``blur_std``).
Output: a store with ``xhat`` float32, the same dims and coordinates, chunks
``(1, image_chunk, 1, c, h, w)``; ``psnr_truth (split, image, sigma)`` float64, chunks
``(1, image_chunk, 1)``: ``PSNR(x̂, x) = 10 log10(1 / mean((x̂ − x)²))`` against the clean image x
behind each ``y`` (:func:`lemmse.data.load_clean`: the measurement store names its data store), so
the gather stage reads it instead of recomputing it; and provenance attrs (model directory, step,
architecture, patch, task, pre-inverse, σ range trained on, weights = "ema"). It is built in a hidden
temporary directory and renamed into place only when every block is written
(:func:`lemmse.store.atomic_store`), and marked complete last: a run that dies leaves nothing
that looks finished.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lemmse import store
from lemmse.errors import LemmseInputError
from lemmse.metrics import psnr
from lemmse.progress import progress_bar
from lemmse.training.checkpoint import checkpoint_path, load_checkpoint
from lemmse.training.loop import model_from_config, problem_from_config, set_precision

log = logging.getLogger(__name__)

Y_DIMS = ("split", "image", "sigma", "c", "h", "w")


def load_trained(location: str | Path, device: str | torch.device = "cpu",
                 weights: str = "ema") -> tuple[torch.nn.Module, dict[str, Any], int]:
    """``(network in eval mode, resolved config, step)`` from a model directory or ``model.pt``."""
    if weights not in ("ema", "model"):
        raise LemmseInputError(f"weights={weights!r}: choose 'ema' or 'model'")
    state = load_checkpoint(location)
    net = model_from_config(state["config"])
    net.load_state_dict(state[weights])
    return net.to(device).eval(), state["config"], int(state["step"])


def _open_measurements(path: Path):
    import xarray as xr

    if not path.exists():
        raise LemmseInputError(f"measurement store {path} does not exist")
    if store.is_complete(path):
        ds = store.open_dataset(path)
    else:
        try:
            ds = xr.open_zarr(path)
        except Exception as err:
            raise LemmseInputError(f"measurement store {path} cannot be opened ({err})") from err
        if ds.attrs.get(store.COMPLETE_ATTR) is False:
            raise LemmseInputError(f"measurement store {path} is not complete (still being written, or a failed run left it)")
    if "y" not in ds:
        raise LemmseInputError(f"measurement store {path} has no variable 'y'")
    if tuple(ds["y"].dims) != Y_DIMS:
        raise LemmseInputError(f"measurement store {path}: y has dims {tuple(ds['y'].dims)}, expected {Y_DIMS}")
    return ds


def _check_fit(ds, config: dict[str, Any], path: Path) -> None:
    task = ds.attrs.get("task")
    if task != config["task"]:
        raise LemmseInputError(f"measurement store {path} is for task {task!r} but the model was trained for {config['task']!r}")
    for key in ("hole", "blur_std"):
        have, want = ds.attrs.get(key), config.get(key)
        if have is not None and want is not None and not math.isclose(float(have), float(want)):
            raise LemmseInputError(f"measurement store {path} has {key}={have} but the model was trained with {key}={want}")
    c, h, w = (ds.sizes[d] for d in ("c", "h", "w"))
    if [c, h, w] != [config["channels"], *config["image_size"]]:
        raise LemmseInputError(f"measurement store {path} holds (c, h, w) = {(c, h, w)} but the model was trained "
                               f"on {(config['channels'], *config['image_size'])}")


def _clean_images(path: Path, ds, splits: Sequence[str]) -> dict[str, np.ndarray]:
    """The clean images ``(image, c, h, w)`` behind the measurements of each split (for ``psnr_truth``)."""
    from lemmse.data import load_clean

    if "data_store" not in ds.attrs:
        raise LemmseInputError(f"measurement store {path} names no data store (attr data_store), so the clean "
                               "images behind y are unknown; build it with lemmse.data.build_measurements")
    return {s: load_clean(path, s) for s in splits}


def infer_store(model: str | Path, measurements: str | Path, out: str | Path, *,
                device: str | torch.device = "cpu", batch_size: int = 256,
                splits: Sequence[str] | None = None, sigmas: Sequence[float] | None = None,
                progress: bool = False) -> Path:
    """Run the EMA network of ``model`` on every ``y`` of ``measurements``; write ``out`` (``xhat`` and its
    ``psnr_truth``, module docstring).

    ``batch_size`` images per forward pass (also the chunk along ``image``); ``splits`` and
    ``sigmas`` restrict the output to those splits and noise levels of the store (default: all; a
    network trained at one fixed σ is evaluated at that σ only).
    """
    measurements, out = Path(measurements), Path(out)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise LemmseInputError(f"batch_size={batch_size!r} must be a positive integer")
    set_precision(device)  # deterministic kernels on CUDA (see lemmse.training.loop)
    net, config, step = load_trained(model, device)
    ds = _open_measurements(measurements)
    _check_fit(ds, config, measurements)
    all_splits = [str(s) for s in ds["split"].values]
    splits = all_splits if splits is None else list(splits)
    for s in splits:
        if s not in all_splits:
            raise LemmseInputError(f"split {s!r} is not in measurement store {measurements} (it has {all_splits})")
    grid = np.asarray(ds["sigma"].values, dtype=np.float64)
    sigma_index = list(range(len(grid))) if sigmas is None else [_sigma_index(grid, s, measurements) for s in sigmas]
    sigmas = grid[sigma_index]
    lo, hi = config["sigma_min"], config["sigma_max"]
    outside = [float(s) for s in sigmas if not lo - 1e-12 <= s <= hi + 1e-12]
    if outside:
        log.warning("σ %s outside the training range [%g, %g] of %s", outside, lo, hi, model)
    clean = _clean_images(measurements, ds, splits)
    problem, preinverse = problem_from_config(config)
    preinverse = preinverse.to(device)
    n_images = ds.sizes["image"]
    chunk = min(batch_size, n_images)
    c, h, w = config["channels"], *config["image_size"]
    attrs = {"model": str(checkpoint_path(model)), "step": step, "weights": "ema", "measurements": str(measurements),
             "arch": config["arch"], "patch": config["patch"], "task": config["task"],
             "preinverse": config["preinverse"], "lam": config.get("lam"), "hole": config.get("hole"),
             "blur_std": config.get("blur_std"), "sigma_min": lo, "sigma_max": hi,
             "train_size": config["train_size"], "data_sha256": config["data_sha256"]}
    coords = {"split": np.asarray(splits), "image": ds["image"].values, "sigma": ds["sigma"].values[sigma_index]}
    blocks = [(i, k, sl) for i in range(len(splits)) for k in range(len(sigmas))
              for sl in store.chunk_slices(n_images, chunk)]
    with store.atomic_store(out) as tmp:
        store.create_template(tmp, coords=coords, sizes={"c": c, "h": h, "w": w}, attrs=attrs,
                              variables={"xhat": store.VariableSpec(Y_DIMS, (1, chunk, 1, c, h, w)),
                                         "psnr_truth": store.VariableSpec(Y_DIMS[:3], (1, chunk, 1), "float64")})
        y_var = ds["y"]
        for i, k, sl in progress_bar(blocks, enabled=progress, desc="infer", unit="block"):
            y = y_var.isel(split=all_splits.index(splits[i]), sigma=sigma_index[k], image=sl).values
            v = preinverse(torch.as_tensor(np.asarray(y, dtype=np.float32), device=device))
            with torch.no_grad():
                xhat = net(v, float(sigmas[k])).cpu().numpy()
            psnr_to_truth = psnr(xhat.astype(np.float32), clean[splits[i]][sl])
            store.write_region(tmp, {"xhat": xhat[None, :, None], "psnr_truth": psnr_to_truth[None, :, None]},
                               region={"split": slice(i, i + 1), "image": sl, "sigma": slice(k, k + 1)})
        store.mark_complete(tmp)
    log.info("wrote %s: %d splits × %d images × %d σ", out, len(splits), n_images, len(sigmas))
    return out


def _sigma_index(grid: np.ndarray, sigma: float, path: Path) -> int:
    """The index of ``sigma`` in the store's σ grid (to 1e-9 relative), refused, naming both, if absent."""
    hits = np.flatnonzero(np.isclose(grid, float(sigma), rtol=1e-9, atol=0.0))
    if len(hits) != 1:
        raise LemmseInputError(f"σ = {sigma:g} is not in measurement store {path} "
                               f"(it has {', '.join(f'{s:g}' for s in grid)})")
    return int(hits[0])
