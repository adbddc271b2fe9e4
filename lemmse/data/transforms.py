r"""Small deterministic image transforms used by the dataset recipes.

All functions take and return float arrays shaped ``(N, C, H, W)`` (or one ``(H, W, C)`` image
where said) and are pure numpy/PIL/torch on CPU, so a recipe gives the same bytes every time.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from lemmse.errors import LemmseInputError


def upsample_bilinear(images: np.ndarray, factor: int) -> np.ndarray:
    """Upsample by an integer ``factor``: bilinear, half-pixel centres, edges clamped.

    This is ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``, computed
    in float64 and returned as float32.
    """
    import torch

    if factor == 1:
        return np.ascontiguousarray(images, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float64))
    out = torch.nn.functional.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return out.numpy().astype(np.float32)


def block_average(image_hwc: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor × factor`` blocks of one ``(H, W, C)`` float image.

    The bottom/right remainder rows and columns (``H mod factor``, ``W mod factor``) are dropped.
    """
    h = image_hwc.shape[0] // factor * factor
    w = image_hwc.shape[1] // factor * factor
    c = image_hwc.shape[2]
    return image_hwc[:h, :w].reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3))


def tiles(image_hwc: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping ``size × size`` tiles of one ``(H, W, C)`` image, row-major, as ``(n, C, size, size)``."""
    rows, cols, c = image_hwc.shape[0] // size, image_hwc.shape[1] // size, image_hwc.shape[2]
    cut = image_hwc[:rows * size, :cols * size]
    return cut.reshape(rows, size, cols, size, c).transpose(0, 2, 4, 1, 3).reshape(-1, c, size, size)


def resize_box(images: np.ndarray, size: int) -> np.ndarray:
    r"""Resize square ``(N, C, S, S)`` images to ``size × size`` with PIL's box filter.

    Each output pixel is the area-weighted mean of the input pixels its footprint covers
    (``PIL.Image.resize(..., Image.Resampling.BOX)`` on 32-bit float planes); for an integer
    factor ``S / size`` this is exact block averaging. Only downsizing is allowed (no detail is
    invented): ``size > S`` is an error.
    """
    n, c, h, w = images.shape
    if size > min(h, w):
        raise LemmseInputError(f"resolution {size} is larger than the source images ({h}x{w}); only downsizing is allowed")
    if (h, w) == (size, size):
        return np.ascontiguousarray(images, dtype=np.float32)
    out = np.empty((n, c, size, size), np.float32)
    for i in range(n):
        for k in range(c):
            plane = Image.fromarray(np.ascontiguousarray(images[i, k], dtype=np.float32))
            out[i, k] = np.asarray(plane.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    return out


def pad_zero(images: np.ndarray, size: int) -> np.ndarray:
    """Centre ``(N, C, H, W)`` images on a ``size × size`` black canvas (zero padding)."""
    n, c, h, w = images.shape
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, c, size, size), np.float32)
    out[:, :, top:top + h, left:left + w] = images
    return out
