r"""FashionMNIST from its original idx-ubyte files (raw or ``.gz``), read by our own small reader.

Files looked for in ``root`` (then in ``root/FashionMNIST/raw``, torchvision's layout):
``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte``, each either raw or gzipped
(``.gz``; raw wins when both exist). Labels are not needed and not read.

idx format (big-endian): bytes 0-1 zero, byte 2 the element type (``0x08`` = unsigned byte),
byte 3 the number of dimensions ``d``; then ``d`` uint32 sizes; then the elements, row-major.
Images are ``(n, 28, 28)`` uint8.

Recipe: ``uint8 / 255`` in float64, cast to float32; resolution 28 as is, 32 zero-padded by 2
pixels on every side (the usual way to put FashionMNIST on a 32×32 grid). Split: the official
files; train = first ``train_size`` images of the training file (default 60000), test = first
``test_size`` of the test file (default 10000). ``download: true`` fetches the four-file
release's two image files from Zalando's server into ``root`` first (MD5-checked).
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from lemmse.data.base import DatasetSpec, SplitImages, check_resolution, check_size
from lemmse.data.transforms import pad_zero
from lemmse.errors import LemmseInputError

FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: MD5 of the gzipped image files of the official release
MD5 = {"train": "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "test": "bef4ecab320f06d8554ea6380940ec79"}
UBYTE = 0x08


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _parse_header(path: Path, head: bytes) -> tuple[int, ...]:
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise LemmseInputError(f"{path}: not an idx file (bad magic number {head[:4].hex() or 'empty'})")
    if head[2] != UBYTE:
        raise LemmseInputError(f"{path}: idx element type 0x{head[2]:02x} is not unsigned byte (0x08)")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise LemmseInputError(f"{path}: truncated idx header")
    return struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim])


def read_idx_shape(path: Path) -> tuple[int, ...]:
    """The array shape stored in the header of an idx-ubyte file (raw or ``.gz``), reading only the header."""
    try:
        with _open(path) as f:
            head = f.read(4)
            head += f.read(4 * head[3]) if len(head) == 4 else b""
    except (OSError, EOFError, zlib.error) as err:
        raise LemmseInputError(f"{path}: cannot read idx header ({err})") from err
    return _parse_header(path, head)


def read_idx(path: Path) -> np.ndarray:
    """Read a whole idx-ubyte file (raw or ``.gz``) as a uint8 array; corrupt or truncated files are refused."""
    try:
        with _open(path) as f:
            blob = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise LemmseInputError(f"{path}: cannot read ({err})") from err
    shape = _parse_header(path, blob[:4] + blob[4:4 + 4 * (blob[3] if len(blob) > 3 else 0)])
    offset = 4 + 4 * len(shape)
    expected = int(np.prod(shape))
    payload = len(blob) - offset
    if payload != expected:
        raise LemmseInputError(f"{path}: header announces {shape} = {expected} bytes of data but the file has "
                               f"{payload} ({'truncated' if payload < expected else 'trailing bytes'})")
    return np.frombuffer(blob, dtype=np.uint8, offset=offset).reshape(shape)


def find_file(root: Path, split: str) -> Path:
    """The idx image file of ``split`` under ``root`` (raw preferred over ``.gz``)."""
    name = FILES[split]
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise LemmseInputError(f"fashion_mnist: missing file {root / name} (or {name}.gz) in root={root}")


def _download(root: Path) -> None:
    from lemmse.data.download import fetch

    for split, name in FILES.items():
        if not (root / name).is_file():
            fetch(URL + name + ".gz", root / f"{name}.gz", MD5[split])


def _root(config: dict) -> Path:
    if config["root"] is None:
        raise LemmseInputError("fashion_mnist: config key root (the folder with the idx files) is not set")
    return Path(config["root"]).expanduser()


def _check(config: dict) -> None:
    check_resolution("fashion_mnist", config["resolution"], (28, 32))
    root = _root(config)
    if config["download"]:
        _download(root)
    for split in ("train", "test"):
        path = find_file(root, split)
        shape = read_idx_shape(path)
        if len(shape) != 3 or shape[1:] != (28, 28):
            raise LemmseInputError(f"{path}: expected images shaped (n, 28, 28), header says {shape}")
        check_size(f"fashion_mnist ({path.name})", f"{split}_size", config[f"{split}_size"], shape[0])


def _build(config: dict) -> SplitImages:
    root = _root(config)
    out = {}
    for split in ("train", "test"):
        path = find_file(root, split)
        raw = read_idx(path)[:config[f"{split}_size"]]
        images = (raw.astype(np.float64) / 255.0).astype(np.float32)[:, None]
        out[split] = pad_zero(images, 32) if config["resolution"] == 32 else images
    return SplitImages(
        train=out["train"], test=out["test"],
        train_index=np.arange(len(out["train"])), test_index=np.arange(len(out["test"])),
        attrs={
            "source": "Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017), Zalando Research; files "
                      f"{find_file(root, 'train').name}, {find_file(root, 'test').name}",
            "licence": "MIT",
            "url": "https://github.com/zalandoresearch/fashion-mnist",
            "preprocessing": "idx uint8 / 255 (float64), cast to float32"
                             + ("; zero-padded by 2 pixels on each side to 32x32" if config["resolution"] == 32 else ""),
            "split": "official files; train = first train_size of the training file, test = first "
                     "test_size of the t10k file",
        })


SPEC = DatasetSpec(
    name="fashion_mnist", summary="Fashion-MNIST from its idx-ubyte files (raw or .gz), 28x28 or padded 32x32",
    defaults={"root": None, "download": False, "resolution": 32, "train_size": 60000, "test_size": 10000,
              "ood": None},
    channels=lambda config: 1, check=_check, build=_build)
