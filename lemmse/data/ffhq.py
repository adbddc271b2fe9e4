r"""FFHQ from a folder of PNG files or a zip of them (e.g. the official 128×128 thumbnails).

``root`` is either a folder, searched recursively for ``*.png`` (the official thumbnails sit in
sub-folders ``00000/``, ``01000/``, …), or a ``.zip`` file whose ``*.png`` members are used. In
both cases the images are ordered by their relative path, sorted as strings, and that order is
the pool: train = ``[0, train_size)``, test = ``[test_start, test_start + test_size)`` (defaults
60000 / 60000 / 10000, the usual 60k/10k split of the 70000 images).

Recipe: each PNG is decoded with Pillow and converted to RGB, scaled to [0, 1]
(``uint8 / 255``), and resized from its ``S × S`` size to ``resolution`` (16, 32, 64 or 128;
at most ``S``) with PIL's **box filter** on float32 planes: each output pixel is the
area-weighted mean of the source pixels under it, which for 128 → 32 or 64 is exact 4×4 or
2×2 block averaging (no ringing, no invented detail). Every image must be square and the same
size as the first. FFHQ cannot be downloaded automatically (it sits behind Google Drive quotas),
so ``download: true`` is refused.
"""
from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lemmse.data.base import DatasetSpec, SplitImages, check_pool_split, check_resolution
from lemmse.data.transforms import resize_box
from lemmse.errors import LemmseInputError
from lemmse.progress import progress_bar

log = logging.getLogger(__name__)

RESOLUTIONS = (16, 32, 64, 128)


class PngSource:
    """The sorted PNG files of a folder or a zip; ``read(i)`` decodes the i-th as float64 ``(3, S, S)``."""

    def __init__(self, root: Path):
        self.root = root
        if root.is_file() and root.suffix.lower() == ".zip":
            try:
                self._zip = zipfile.ZipFile(root)
            except (OSError, zipfile.BadZipFile) as err:
                raise LemmseInputError(f"ffhq: {root} is not a readable zip file ({err})") from err
            self.names = sorted(n for n in self._zip.namelist() if n.lower().endswith(".png"))
        elif root.is_dir():
            self._zip = None
            self.names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() == ".png")
        else:
            raise LemmseInputError(f"ffhq: root={root} is neither a folder nor a .zip file")
        if not self.names:
            raise LemmseInputError(f"ffhq: no .png files in {root}")

    def describe(self, i: int) -> str:
        return f"{self.root}:{self.names[i]}" if self._zip else str(self.root / self.names[i])

    def _open(self, i: int) -> Image.Image:
        try:
            if self._zip is not None:
                image = Image.open(io.BytesIO(self._zip.read(self.names[i])))
            else:
                image = Image.open(self.root / self.names[i])
            image.load()
        except (OSError, UnidentifiedImageError, zipfile.BadZipFile, EOFError, ValueError) as err:
            raise LemmseInputError(f"ffhq: cannot decode {self.describe(i)} ({err})") from err
        return image

    def size(self, i: int) -> tuple[int, int]:
        return self._open(i).size

    def read(self, i: int) -> np.ndarray:
        rgb = np.asarray(self._open(i).convert("RGB"), dtype=np.float64) / 255.0
        return rgb.transpose(2, 0, 1)


def _root(config: dict) -> Path:
    if config["root"] is None:
        raise LemmseInputError("ffhq: config key root (a folder of PNGs or a .zip of them) is not set")
    return Path(config["root"]).expanduser()


def _check(config: dict) -> PngSource:
    if config["download"]:
        raise LemmseInputError("ffhq: download=true is not supported; fetch FFHQ yourself and set root")
    check_resolution("ffhq", config["resolution"], RESOLUTIONS)
    source = PngSource(_root(config))
    check_pool_split(f"ffhq ({source.root})", len(source.names), config["train_size"], config["test_start"],
                     config["test_size"])
    w, h = source.size(0)
    if w != h:
        raise LemmseInputError(f"ffhq: {source.describe(0)} is {w}x{h}, not square")
    if config["resolution"] > w:
        raise LemmseInputError(f"ffhq: resolution={config['resolution']} is not one the source can give; "
                               f"its images are {w}x{h} (only downsizing)")
    return source


def _build(config: dict) -> SplitImages:
    source = _check(config)
    first = source.size(0)
    res = config["resolution"]

    def load(indices: np.ndarray, desc: str) -> np.ndarray:
        out = np.empty((len(indices), 3, res, res), np.float32)
        for k, i in enumerate(progress_bar(indices, enabled=True, desc=desc, unit="img")):
            image = source.read(int(i))
            if image.shape[1:] != (first[1], first[0]):
                raise LemmseInputError(f"ffhq: {source.describe(int(i))} is {image.shape[2]}x{image.shape[1]}, "
                                       f"but the first image is {first[0]}x{first[1]}")
            out[k] = resize_box(image[None].astype(np.float32), res)[0]
        return np.clip(out, 0.0, 1.0)

    train_index = np.arange(config["train_size"])
    test_index = np.arange(config["test_start"], config["test_start"] + config["test_size"])
    return SplitImages(
        train=load(train_index, "ffhq train"), test=load(test_index, "ffhq test"),
        train_index=train_index, test_index=test_index,
        attrs={
            "source": f"FFHQ (Karras, Laine and Aila, 2019), PNG files from {source.root.name}",
            "licence": "dataset CC BY-NC-SA 4.0 (NVIDIA); individual images CC BY 2.0, CC BY-NC 2.0, "
                       "Public Domain Mark 1.0, CC0 1.0 or U.S. Government Works",
            "url": "https://github.com/NVlabs/ffhq-dataset",
            "preprocessing": f"PNG decoded with Pillow, RGB, uint8 / 255; resized {first[0]}x{first[1]} -> "
                             f"{res}x{res} with PIL's box filter (area average) on float32 planes",
            "split": "PNG files sorted by relative path; train = [0, train_size), test = "
                     "[test_start, test_start + test_size)",
            "file_order": "sorted relative paths",
        })


SPEC = DatasetSpec(
    name="ffhq", summary="FFHQ from a folder (or zip) of PNGs, box-filtered to 32x32 or 64x64",
    defaults={"root": None, "download": False, "resolution": 32, "train_size": 60000, "test_start": 60000,
              "test_size": 10000, "ood": "cifar10"},
    channels=lambda config: 3, check=_check, build=_build)
