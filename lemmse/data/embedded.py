r"""Datasets made of real images bundled inside installed Python packages: nothing to download.

``digits`` — stand-in for FashionMNIST (grayscale, 16×16)
    scikit-learn's ``load_digits``: 1797 handwritten digits, 8×8, integer levels 0..16, in the
    bundled order. Recipe: divide by 16, then (resolution 16) upsample 2× bilinearly with
    half-pixel centres and clamped edges, i.e. ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` in float64, cast to float32 (resolution 8: no upsampling). Split:
    train = images ``[0, train_size)``, test = ``[test_start, test_start + test_size)``, defaults
    1500 / 1500 / 297 (the benchmark's split: ``/work/shared/bench``'s ``digits16.npy``).

``photos`` — stand-in for CIFAR-10 (colour, 16×16 or 32×32)
    scikit-image's photographs astronaut, coffee, chelsea and rocket, in that order; each is
    scaled to [0, 1] (``uint8 / 255`` in float64) and block-averaged by 2, 3 and 4 (in that
    order; remainder rows/columns dropped), then cut into non-overlapping ``resolution``-sized
    tiles, row-major. The tiles of all 12 (photo, factor) pairs are pooled in that order and
    shuffled with ``numpy.random.default_rng(0).permutation``: 1418 tiles at 16, 340 at 32. With
    ``grayscale: true`` each tile becomes its luma ``0.2125 R + 0.7154 G + 0.0721 B`` (one
    channel). Split on the shuffled pool: defaults train 1000, test_start 1000, test 100 at 16
    (the benchmark's ``color16.npy``); train 300, test_start 300, test 40 at 32.

``faces`` — stand-in for FFHQ (grayscale, small)
    The 100 face crops of scikit-image's ``lfw_subset`` (its first 100 images; the other 100 are
    non-faces and are not used), 25×25 in [0, 1], resized to ``resolution`` (8 to 25) with
    PIL's box filter (area averaging, see :func:`~lemmse.data.transforms.resize_box`). Split:
    defaults train 80, test_start 80, test 20.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lemmse.data.base import DatasetSpec, SplitImages, check_pool_split, check_resolution, pool_split
from lemmse.data.transforms import block_average, resize_box, tiles, upsample_bilinear
from lemmse.errors import LemmseInputError

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
PHOTO_FACTORS = (2, 3, 4)
#: luma weights of ``skimage.color.rgb2gray`` (ITU-R BT.709)
LUMA = (0.2125, 0.7154, 0.0721)
#: per resolution: (train_size, test_start, test_size) defaults
PHOTO_SPLITS = {16: (1000, 1000, 100), 32: (300, 300, 40)}
FACES_AVAILABLE = 100


# ---------------------------------------------------------------------------------------- digits
def _digits_raw() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images  # (1797, 8, 8) float64, levels 0..16


def _check_digits(config: dict) -> None:
    check_resolution("digits", config["resolution"], (8, 16))
    check_pool_split("digits", 1797, config["train_size"], config["test_start"], config["test_size"])


def _build_digits(config: dict) -> SplitImages:
    images = (_digits_raw() / 16.0)[:, None]
    pool = upsample_bilinear(images, config["resolution"] // 8)
    return pool_split(pool, config, {
        "source": "scikit-learn load_digits (copy of the test set of the UCI 'Optical Recognition of "
                  "Handwritten Digits' data, E. Alpaydin and C. Kaynak, 1998)",
        "licence": "CC BY 4.0 (UCI Machine Learning Repository); bundled with scikit-learn (BSD-3-Clause)",
        "url": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        "preprocessing": "images / 16 (levels 0..16 -> [0, 1]); for resolution 16 a 2x bilinear upsample "
                         "(torch interpolate, align_corners=False, float64), cast to float32",
        "split": "bundled order; train = [0, train_size), test = [test_start, test_start + test_size)",
    })


DIGITS = DatasetSpec(
    name="digits", summary="scikit-learn's handwritten digits, grayscale 16x16 (FashionMNIST stand-in)",
    defaults={"resolution": 16, "train_size": 1500, "test_start": 1500, "test_size": 297, "ood": "faces"},
    channels=lambda config: 1, check=_check_digits, build=_build_digits)


# ---------------------------------------------------------------------------------------- photos
def _photo_tile_pool(size: int) -> np.ndarray:
    """All tiles of the recipe, pooled in recipe order (unshuffled), float64 ``(n, 3, size, size)``."""
    import skimage.data

    pool = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)().astype(np.float64) / 255.0
        for factor in PHOTO_FACTORS:
            pool.append(tiles(block_average(image, factor), size))
    return np.concatenate(pool)


def _photo_count(size: int) -> int:
    import skimage.data

    count = 0
    for name in PHOTOS:
        h, w = getattr(skimage.data, name)().shape[:2]
        count += sum((h // f // size) * (w // f // size) for f in PHOTO_FACTORS)
    return count


def _resolve_photo_defaults(config: dict) -> None:
    res = config["resolution"]
    check_resolution("photos", res, tuple(PHOTO_SPLITS))
    for key, default in zip(("train_size", "test_start", "test_size"), PHOTO_SPLITS[res]):
        if config[key] is None:
            config[key] = default


def _check_photos(config: dict) -> None:
    _resolve_photo_defaults(config)
    res = config["resolution"]
    check_pool_split("photos", _photo_count(res), config["train_size"], config["test_start"], config["test_size"])


def _build_photos(config: dict) -> SplitImages:
    _resolve_photo_defaults(config)
    res = config["resolution"]
    pool = _photo_tile_pool(res)
    pool = pool[np.random.default_rng(0).permutation(len(pool))]
    recipe = (f"photos {', '.join(PHOTOS)} (uint8 / 255, float64), each block-averaged by "
              f"{', '.join(map(str, PHOTO_FACTORS))} (remainder dropped), cut into non-overlapping "
              f"{res}x{res} tiles row-major, pooled in that order ({len(pool)} tiles), shuffled with "
              "numpy.random.default_rng(0).permutation")
    if config["grayscale"]:
        pool = np.tensordot(np.asarray(LUMA), pool, axes=([0], [1]))[:, None]
        recipe += "; grayscale: luma 0.2125 R + 0.7154 G + 0.0721 B"
    pool = np.clip(pool, 0.0, 1.0).astype(np.float32)
    return pool_split(pool, config, {
        "source": "scikit-image bundled photographs astronaut (NASA), coffee (Rachel Michetti), "
                  "chelsea (Stefan van der Walt), rocket (SpaceX)",
        "licence": "astronaut and rocket: public domain; coffee and chelsea: CC0 (per scikit-image's data docs)",
        "url": "https://scikit-image.org/docs/stable/api/skimage.data.html",
        "preprocessing": recipe + "; cast to float32",
        "split": "shuffled tile order; train = [0, train_size), test = [test_start, test_start + test_size)",
    })


PHOTOS_SPEC = DatasetSpec(
    name="photos", summary="colour tiles of scikit-image's photographs, 16x16 or 32x32 (CIFAR-10 stand-in)",
    defaults={"resolution": 16, "train_size": None, "test_start": None, "test_size": None,
              "grayscale": False, "ood": None},
    channels=lambda config: 1 if config.get("grayscale") else 3, check=_check_photos, build=_build_photos)


# ----------------------------------------------------------------------------------------- faces
def _check_faces(config: dict) -> None:
    res = config["resolution"]
    if not 8 <= res <= 25:
        raise LemmseInputError(f"faces: resolution={res} is not one the source can give; the LFW crops are "
                               "25x25, choose 8 to 25 (box-filter downsizing only)")
    check_pool_split("faces", FACES_AVAILABLE, config["train_size"], config["test_start"], config["test_size"])


def _build_faces(config: dict) -> SplitImages:
    import skimage.data

    faces = np.asarray(skimage.data.lfw_subset()[:FACES_AVAILABLE], dtype=np.float64)
    pool = resize_box(faces[:, None].astype(np.float32), config["resolution"])
    pool = np.clip(pool, 0.0, 1.0)
    return pool_split(pool, config, {
        "source": "scikit-image lfw_subset: 100 face crops from Labeled Faces in the Wild (Huang et al.), "
                  "25x25 grayscale",
        "licence": "LFW images are press photographs collected for research use; redistributed by "
                   "scikit-image (BSD-3-Clause) - research use only",
        "url": "http://vis-www.cs.umass.edu/lfw/",
        "preprocessing": "first 100 images of skimage.data.lfw_subset() (the faces), values in [0, 1]; "
                         f"resized 25x25 -> {config['resolution']}x{config['resolution']} with PIL's box "
                         "filter (area average) on float32 planes",
        "split": "bundled order; train = [0, train_size), test = [test_start, test_start + test_size)",
    })


FACES = DatasetSpec(
    name="faces", summary="LFW face crops bundled with scikit-image, grayscale (FFHQ stand-in)",
    defaults={"resolution": 16, "train_size": 80, "test_start": 80, "test_size": 20, "ood": "digits"},
    channels=lambda config: 1, check=_check_faces, build=_build_faces)


def embedded_specs() -> dict[str, Any]:
    return {spec.name: spec for spec in (DIGITS, PHOTOS_SPEC, FACES)}
