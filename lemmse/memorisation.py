r"""Shift-aware distance to the training set, and the memorisation table built from it.

The E-MMSE memorises the *augmented* data set (paper Cor. 3.7): its output at small σ is a
training image **shifted** circularly, so a plain nearest-neighbour distance misses it. Here

    dist(a) = min_{d, g} ‖a − T_g x_d‖ / √(C·H·W)

over training images ``x_d`` and circular shifts ``T_g`` (RMS over pixels and channels).
For all ``H·W`` shifts at once, ``‖a − T_g t‖² = ‖a‖² + ‖t‖² − 2·c_g`` with the circular
cross-correlation ``c_g = Σ_{k} a_k (T_g t)_k`` computed by FFT in float64; the best ``(d, g)``
is then re-measured exactly (a direct difference), so the returned distance has no cancellation.

:func:`memorisation_table` writes, for the test images of every memorisation store of a plan
(MMSE, E-MMSE, LE-MMSE), the shift-aware and the plain distance of the estimate, the training image
and shift reaching it (Fig. 3 draws that shifted image from them) and the shift-aware distance of the
clean image itself (the reference level).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lemmse.errors import LemmseInputError

log = logging.getLogger(__name__)

COLUMNS = ("dataset", "eval_dataset", "task", "preinverse", "estimator", "patch", "train_size", "sigma", "split",
           "image", "distance", "distance_unshifted", "truth_distance", "nearest_index", "nearest_shift_h",
           "nearest_shift_w")


def _search(a: np.ndarray, train: np.ndarray, block: int, cached: list | None) -> tuple[float, int, tuple[int, int],
                                                                                     float, int]:
    """Best (squared distance by FFT, training index, shift) over all circular shifts, and the best
    unshifted (exact squared distance, training index), of one image ``a (C, H, W)``."""
    h, w = a.shape[-2:]
    fa = np.fft.rfft2(a)
    aa = float((a * a).sum())
    top, top_d, top_g = np.inf, 0, (0, 0)
    plain, plain_d = np.inf, 0
    for b, start in enumerate(range(0, len(train), block)):
        t = train[start : start + block]
        tt = (t * t).sum(axis=(1, 2, 3))
        ft = cached[b] if cached is not None else np.conj(np.fft.rfft2(t))
        # c[d, g] = Σ_k a_k t_d[k - g]: ⟨a, T_g t_d⟩ for every circular shift g
        corr = np.fft.irfft2(fa[None] * ft, s=(h, w)).sum(axis=1)
        sq = aa + tt[:, None, None] - 2.0 * corr
        d, gy, gx = np.unravel_index(int(np.argmin(sq)), sq.shape)
        if sq[d, gy, gx] < top:
            top, top_d, top_g = sq[d, gy, gx], start + int(d), (int(gy), int(gx))
        direct = ((t - a) ** 2).sum(axis=(1, 2, 3))
        if float(direct.min()) < plain:
            plain, plain_d = float(direct.min()), start + int(np.argmin(direct))
    return float(top), top_d, top_g, plain, plain_d


def _as_float(images: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float64)
    train = np.asarray(train, dtype=np.float64)
    if images.ndim != 4 or train.ndim != 4 or images.shape[1:] != train.shape[1:]:
        raise LemmseInputError(f"images {images.shape} and train {train.shape} must be (n, C, H, W) of one shape")
    if len(train) == 0:
        raise LemmseInputError("the training set is empty")
    return images, train


def shift_nearest(images: np.ndarray, train: np.ndarray, *, block: int = 512,
                  cache_bytes: int = 2**30) -> dict[str, np.ndarray]:
    """The nearest training image of each image ``(n, C, H, W)`` over ``train (D, C, H, W)`` and all
    circular shifts: ``distance`` (shift-aware RMS distance), ``distance_unshifted`` (over training
    images only), ``index`` and ``shift_h``/``shift_w`` (the ``(d, g)`` reaching ``distance``: ``T_g x_d``
    is ``np.roll(train[d], (shift_h, shift_w), axis=(1, 2))``), each ``(n,)``. The training spectra are
    computed once when they take at most ``cache_bytes``, else once per image.
    """
    images, train = _as_float(images, train)
    n, c, h, w = images.shape
    size = c * h * w
    out = {name: np.empty(n) for name in ("distance", "distance_unshifted")}
    out.update({name: np.empty(n, dtype=np.int64) for name in ("index", "shift_h", "shift_w")})
    # the conjugate spectra of the training blocks, kept when they fit in ``cache_bytes``
    spectrum_bytes = len(train) * c * h * (w // 2 + 1) * 16
    cached = [np.conj(np.fft.rfft2(train[s : s + block])) for s in range(0, len(train), block)] \
        if spectrum_bytes <= cache_bytes else None
    for i, a in enumerate(images):
        _, top_d, top_g, plain, plain_d = _search(a, train, block, cached)
        shifted = np.roll(train[top_d], shift=top_g, axis=(1, 2))
        exact = float(((a - shifted) ** 2).sum())  # re-measured directly: no FFT cancellation
        if plain < exact:
            exact, top_d, top_g = plain, plain_d, (0, 0)
        out["distance"][i] = np.sqrt(exact / size)
        out["distance_unshifted"][i] = np.sqrt(plain / size)
        out["index"][i], (out["shift_h"][i], out["shift_w"][i]) = top_d, top_g
    return out


def shift_nearest_distance(images: np.ndarray, train: np.ndarray, *, block: int = 512,
                           cache_bytes: int = 2**30) -> tuple[np.ndarray, np.ndarray]:
    """``(shift-aware, unshifted)`` RMS distance of each image to the training set (:func:`shift_nearest`)."""
    near = shift_nearest(images, train, block=block, cache_bytes=cache_bytes)
    return near["distance"], near["distance_unshifted"]


def memorisation_table(plan) -> pd.DataFrame:
    """Distances of the test estimates of every memorisation store of ``plan`` (a :class:`lemmse.plan.sweep.Plan`)."""
    from lemmse import store as zstore
    from lemmse.data import load_clean, load_split

    frames = []
    for run in plan.memorisation:
        est = zstore.open_dataset(run.store(plan.results))
        train = load_split(plan.data_store(run.dataset), "train", count=run.train_size)
        truth = load_clean(plan.measurement_store(run.eval_dataset, run.task), "test")
        xhat = est["xhat"].sel(split="test").transpose("image", "sigma", "c", "h", "w").values
        images, sigmas = est["image"].values, est["sigma"].values
        flat = xhat.reshape(-1, *xhat.shape[2:])
        near = shift_nearest(flat, train)
        truth_dist, _ = shift_nearest_distance(truth[: len(images)], train)
        ii, ss = np.meshgrid(np.arange(len(images)), np.arange(len(sigmas)), indexing="ij")
        frames.append(pd.DataFrame({
            "dataset": run.dataset, "eval_dataset": run.eval_dataset, "task": run.task, "preinverse": run.preinverse,
            "estimator": plan.kind(run), "patch": run.patch, "train_size": run.train_size,
            "sigma": sigmas[ss.ravel()].astype(np.float64), "split": "test",
            "image": images[ii.ravel()].astype(np.int64),
            "distance": near["distance"], "distance_unshifted": near["distance_unshifted"],
            "truth_distance": truth_dist[ii.ravel()], "nearest_index": near["index"],
            "nearest_shift_h": near["shift_h"], "nearest_shift_w": near["shift_w"]}))
        log.info("%s: shift-aware distances of %d estimates", run.store(plan.results), len(flat))
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)] if frames else pd.DataFrame(columns=list(COLUMNS))


def write_memorisation_table(plan, out: str | Path) -> pd.DataFrame:
    """:func:`memorisation_table` written to ``out`` (Parquet) atomically."""
    frame = memorisation_table(plan)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return frame
