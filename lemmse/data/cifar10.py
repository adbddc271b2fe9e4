r"""CIFAR-10 from its "python version" pickle batches, read with a restricted unpickler.

Files looked for in ``root/cifar-10-batches-py`` (or in ``root`` itself): ``data_batch_1`` …
``data_batch_5`` (10000 training images each) and ``test_batch`` (10000 test images). Each is a
pickled dict (Python 2 strings, so loaded with ``encoding="bytes"``) whose ``b"data"`` entry is a
uint8 array ``(10000, 3072)``: per image 1024 red, then 1024 green, then 1024 blue values, each
plane 32×32 row-major; ``b"labels"`` a list of 10000 ints.

Pickles can run arbitrary code, so :class:`RestrictedUnpickler` resolves only the globals a
numpy array needs (``numpy.core.multiarray._reconstruct`` or its numpy-2 name, ``numpy.ndarray``,
``numpy.dtype``); anything else is refused with an error naming the file.

Recipe: ``uint8 / 255`` (float64), cast to float32, ``(n, 3, 32, 32)``; resolution 16 averages
2×2 blocks. Split: the official one; train = first ``train_size`` images of batches 1..5 in
order (default 50000), test = first ``test_size`` of ``test_batch`` (default 10000).
``download: true`` fetches and safely unpacks ``cifar-10-python.tar.gz`` (MD5-checked) into
``root`` first.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from lemmse.data.base import DatasetSpec, SplitImages, check_resolution, check_size
from lemmse.errors import LemmseInputError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
PER_BATCH = 10000
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"


def _allowed_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    allowed = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers and numpy arrays (what a CIFAR batch holds)."""

    ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):  # noqa: D102
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"global {module}.{name} is not allowed in a CIFAR batch") from None


def read_batch(path: Path) -> np.ndarray:
    """Images of one batch file as uint8 ``(n, 3, 32, 32)``; unsafe, corrupt or truncated files are refused."""
    try:
        blob = Path(path).read_bytes()
    except OSError as err:
        raise LemmseInputError(f"{path}: cannot read ({err})") from err
    try:
        batch = RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except RefusedGlobal as err:
        raise LemmseInputError(f"{path}: refused pickle ({err})") from err
    except Exception as err:  # truncated or garbled pickles raise EOFError, ValueError, KeyError, ...
        raise LemmseInputError(f"{path}: corrupt or truncated pickle ({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict):
        raise LemmseInputError(f"{path}: a CIFAR batch is a dict, found {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise LemmseInputError(f"{path}: entry 'data' must be a uint8 array (n, 3072), found {desc}")
    labels = batch.get(b"labels", batch.get("labels"))
    if labels is not None and len(labels) != len(data):
        raise LemmseInputError(f"{path}: {len(labels)} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32)


def batch_folder(root: Path) -> Path:
    for folder in (root / FOLDER, root):
        if (folder / TEST_FILE).is_file() or (folder / TRAIN_FILES[0]).is_file():
            return folder
    raise LemmseInputError(f"cifar10: missing files {root / FOLDER / TRAIN_FILES[0]} ... and {TEST_FILE} in root={root}")


def _download(root: Path) -> None:
    from lemmse.data.download import fetch

    if (root / FOLDER / TEST_FILE).is_file():
        return
    archive = fetch(URL, root / "cifar-10-python.tar.gz", MD5)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")


def _root(config: dict) -> Path:
    if config["root"] is None:
        raise LemmseInputError("cifar10: config key root (the folder with cifar-10-batches-py) is not set")
    return Path(config["root"]).expanduser()


def _needed_train_files(train_size: int) -> tuple[str, ...]:
    return TRAIN_FILES[:-(-train_size // PER_BATCH)]


def _check(config: dict) -> None:
    check_resolution("cifar10", config["resolution"], (16, 32))
    check_size("cifar10", "train_size", config["train_size"], PER_BATCH * len(TRAIN_FILES))
    check_size("cifar10", "test_size", config["test_size"], PER_BATCH)
    root = _root(config)
    if config["download"]:
        _download(root)
    folder = batch_folder(root)
    for name in _needed_train_files(config["train_size"]) + (TEST_FILE,):
        if not (folder / name).is_file():
            raise LemmseInputError(f"cifar10: missing file {folder / name}")


def _to_float(images: np.ndarray, resolution: int) -> np.ndarray:
    x = images.astype(np.float64) / 255.0
    if resolution == 16:
        n = len(x)
        x = x.reshape(n, 3, 16, 2, 16, 2).mean(axis=(3, 5))
    return x.astype(np.float32)


def _build(config: dict) -> SplitImages:
    folder = batch_folder(_root(config))
    train = []
    for name in _needed_train_files(config["train_size"]):
        train.append(read_batch(folder / name))
    train = np.concatenate(train)
    check_size(f"cifar10 ({folder})", "train_size", config["train_size"], len(train))
    test = read_batch(folder / TEST_FILE)
    check_size(f"cifar10 ({folder / TEST_FILE})", "test_size", config["test_size"], len(test))
    train, test = train[:config["train_size"]], test[:config["test_size"]]
    return SplitImages(
        train=_to_float(train, config["resolution"]), test=_to_float(test, config["resolution"]),
        train_index=np.arange(len(train)), test_index=np.arange(len(test)),
        attrs={
            "source": "CIFAR-10 (Krizhevsky, 2009), python version batches data_batch_1..5 and test_batch",
            "licence": "no explicit licence; free to use with citation of Krizhevsky (2009), Learning "
                       "Multiple Layers of Features from Tiny Images",
            "url": "https://www.cs.toronto.edu/~kriz/cifar.html",
            "preprocessing": "uint8 / 255 (float64), cast to float32"
                             + ("; 2x2 block average to 16x16" if config["resolution"] == 16 else ""),
            "split": "official; train = first train_size images of data_batch_1..5 in order, test = "
                     "first test_size of test_batch",
        })


SPEC = DatasetSpec(
    name="cifar10", summary="CIFAR-10 from its python pickle batches (restricted unpickler), colour 32x32",
    defaults={"root": None, "download": False, "resolution": 32, "train_size": 50000, "test_size": 10000,
              "ood": "ffhq"},
    channels=lambda config: 3, check=_check, build=_build)
