"""Real-dataset readers on tiny files fabricated in each exact upstream format (no network)."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from lemmse.data import load_split, prepare_dataset
from lemmse.data.cifar10 import read_batch
from lemmse.data.fashion_mnist import read_idx
from lemmse.errors import LemmseInputError

RNG = np.random.default_rng(7)


# ------------------------------------------------------------------------------- Fashion-MNIST
def _idx_bytes(images: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, images.ndim]) + struct.pack(f">{images.ndim}I", *images.shape) + images.tobytes()


def _write_fmnist(root, n_train=6, n_test=4, gz=False):
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, n in (("train-images-idx3-ubyte", n_train), ("t10k-images-idx3-ubyte", n_test)):
        arrays[name] = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        blob = _idx_bytes(arrays[name])
        if gz:
            with gzip.open(root / f"{name}.gz", "wb") as f:
                f.write(blob)
        else:
            (root / name).write_bytes(blob)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_reads_raw_and_gzip(tmp_path, gz):
    arrays = _write_fmnist(tmp_path / "fm", gz=gz)
    out = prepare_dataset("fashion_mnist", tmp_path / "fm.zarr", root=tmp_path / "fm", train_size=5,
                          test_size=4, resolution=28)
    np.testing.assert_array_equal(load_split(out, "train")[:, 0],
                                  (arrays["train-images-idx3-ubyte"][:5] / 255.0).astype(np.float32))
    np.testing.assert_array_equal(load_split(out, "test")[:, 0],
                                  (arrays["t10k-images-idx3-ubyte"] / 255.0).astype(np.float32))


def test_fashion_mnist_padded_to_32_in_torchvision_layout(tmp_path):
    arrays = _write_fmnist(tmp_path / "root" / "FashionMNIST" / "raw", gz=True)
    out = prepare_dataset("fashion_mnist", tmp_path / "fm.zarr", root=tmp_path / "root", train_size=6, test_size=4)
    train = load_split(out, "train")
    assert train.shape == (6, 1, 32, 32)
    np.testing.assert_array_equal(train[:, 0, 2:30, 2:30], (arrays["train-images-idx3-ubyte"] / 255.0).astype(np.float32))
    assert (train[:, :, :2] == 0).all() and (train[:, :, :, 30:] == 0).all()


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:-10], "truncated"),
    (lambda b: b + b"xx", "trailing"),
    (lambda b: b"\x00\x00\x0d\x03" + b[4:], "0x0d"),
    (lambda b: b"\x12\x34" + b[2:], "magic"),
    (lambda b: b"", "magic"),
])
def test_fashion_mnist_corrupt_files_are_named(tmp_path, damage, match):
    _write_fmnist(tmp_path / "fm")
    path = tmp_path / "fm" / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(LemmseInputError, match=match) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    with pytest.raises(LemmseInputError, match="train-images-idx3-ubyte"):
        prepare_dataset("fashion_mnist", tmp_path / "fm.zarr", root=tmp_path / "fm", train_size=1, test_size=1)
    assert not (tmp_path / "fm.zarr").exists()


def test_fashion_mnist_truncated_gzip_is_named(tmp_path):
    _write_fmnist(tmp_path / "fm", gz=True)
    path = tmp_path / "fm" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(LemmseInputError, match="t10k-images-idx3-ubyte.gz"):
        prepare_dataset("fashion_mnist", tmp_path / "fm.zarr", root=tmp_path / "fm", train_size=1, test_size=1)
    assert not (tmp_path / "fm.zarr").exists()


def test_fashion_mnist_missing_file_and_sizes(tmp_path):
    _write_fmnist(tmp_path / "fm")
    with pytest.raises(LemmseInputError, match="train_size=7"):
        prepare_dataset("fashion_mnist", tmp_path / "o.zarr", root=tmp_path / "fm", train_size=7, test_size=1)
    with pytest.raises(LemmseInputError, match="resolution=64"):
        prepare_dataset("fashion_mnist", tmp_path / "o.zarr", root=tmp_path / "fm", resolution=64)
    os.remove(tmp_path / "fm" / "t10k-images-idx3-ubyte")
    with pytest.raises(LemmseInputError, match="t10k-images-idx3-ubyte"):
        prepare_dataset("fashion_mnist", tmp_path / "o.zarr", root=tmp_path / "fm", train_size=1, test_size=1)
    with pytest.raises(LemmseInputError, match="root"):
        prepare_dataset("fashion_mnist", tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


# ----------------------------------------------------------------- downloads (from a file:// mirror)
def _mirror(tmp_path, monkeypatch) -> dict:
    """The gzipped Fashion-MNIST files in a local folder, and the loader's URL and MD5s pointed at them."""
    from lemmse.data import fashion_mnist
    from lemmse.data.download import md5sum

    mirror = tmp_path / "mirror"
    arrays = _write_fmnist(mirror, gz=True)
    monkeypatch.setattr(fashion_mnist, "URL", mirror.as_uri() + "/")
    monkeypatch.setattr(fashion_mnist, "MD5", {split: md5sum(mirror / f"{name}.gz")
                                               for split, name in fashion_mnist.FILES.items()})
    return arrays


def _prepare_downloading(tmp_path):
    return prepare_dataset("fashion_mnist", tmp_path / "fm.zarr", root=tmp_path / "root", train_size=6,
                           test_size=4, resolution=28, download=True)


def test_download_fetches_the_md5_checked_files_into_root(tmp_path, monkeypatch):
    arrays = _mirror(tmp_path, monkeypatch)
    out = _prepare_downloading(tmp_path)
    # both files renamed into place, no partial download left beside them
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                                     "train-images-idx3-ubyte.gz"]
    np.testing.assert_array_equal(load_split(out, "test")[:, 0],
                                  (arrays["t10k-images-idx3-ubyte"] / 255.0).astype(np.float32))


def test_a_downloaded_file_with_another_md5_is_not_kept(tmp_path, monkeypatch):
    from lemmse.data import fashion_mnist

    _mirror(tmp_path, monkeypatch)
    monkeypatch.setitem(fashion_mnist.MD5, "test", "0" * 32)
    with pytest.raises(LemmseInputError, match=r"t10k-images-idx3-ubyte\.gz has MD5 [0-9a-f]{32}, expected 0{32}"):
        _prepare_downloading(tmp_path)
    assert [p.name for p in (tmp_path / "root").iterdir()] == ["train-images-idx3-ubyte.gz"]
    assert not (tmp_path / "fm.zarr").exists()


def test_a_file_already_in_root_with_its_md5_is_not_fetched_again(tmp_path, monkeypatch):
    from lemmse.data import fashion_mnist

    _mirror(tmp_path, monkeypatch)
    (tmp_path / "root").mkdir()
    for p in (tmp_path / "mirror").iterdir():
        (tmp_path / "root" / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(fashion_mnist, "URL", (tmp_path / "nowhere").as_uri() + "/")  # never opened
    assert load_split(_prepare_downloading(tmp_path), "train").shape == (6, 1, 28, 28)


def test_an_unreachable_download_is_named(tmp_path, monkeypatch):
    from lemmse.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(LemmseInputError, match=r"could not download \S*nowhere/train-images-idx3-ubyte\.gz"):
        _prepare_downloading(tmp_path)
    assert list((tmp_path / "root").iterdir()) == []


# ------------------------------------------------------------------------------------ CIFAR-10
class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (BINSTRING opcodes), as the upstream batches were written."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def _cifar_pickle(obj) -> bytes:
    """A Python-2-style protocol-2 pickle naming numpy's reconstructor as the upstream files do."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _write_cifar(root, per_batch=3, n_batches=5):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    names = [f"data_batch_{i}" for i in range(1, n_batches + 1)] + ["test_batch"]
    for name in names:
        images = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[name] = images
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in RNG.integers(0, 10, per_batch)],
                 b"data": images, b"filenames": [f"img_{k}.png".encode() for k in range(per_batch)]}
        (folder / name).write_bytes(_cifar_pickle(batch))
    return folder, data


def test_cifar_batches_decode_in_channel_major_order(tmp_path):
    folder, data = _write_cifar(tmp_path / "c", per_batch=3)
    blob = (folder / "test_batch").read_bytes()
    assert b"numpy.core.multiarray" in blob and b"_codecs" not in blob
    images = read_batch(folder / "test_batch")
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[1, 2].ravel(), data["test_batch"][1, 2048:])


def test_cifar_prepare_and_block_average(tmp_path, monkeypatch):
    import lemmse.data.cifar10 as cifar

    monkeypatch.setattr(cifar, "PER_BATCH", 3)  # our fabricated batches hold 3 images, not 10000
    folder, data = _write_cifar(tmp_path / "c", per_batch=3)
    out = prepare_dataset("cifar10", tmp_path / "c.zarr", root=tmp_path / "c", train_size=5, test_size=2)
    train = load_split(out, "train")
    expected = np.concatenate([data["data_batch_1"], data["data_batch_2"]])[:5].reshape(5, 3, 32, 32) / 255.0
    np.testing.assert_array_equal(train, expected.astype(np.float32))
    small = prepare_dataset("cifar10", tmp_path / "c16.zarr", root=tmp_path / "c", train_size=2, test_size=2,
                            resolution=16)
    got = load_split(small, "test")
    full = data["test_batch"][:2].reshape(2, 3, 32, 32) / 255.0
    np.testing.assert_allclose(got[:, :, 3, 5], full[:, :, 6:8, 10:12].mean(axis=(2, 3)), rtol=1e-6)
    assert xr.open_zarr(small).attrs["ood_partner"] == "ffhq"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload, match", [
    (lambda: pickle.dumps({b"data": _Evil()}, protocol=2), "not allowed"),
    (lambda: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "_codecs.encode"),
    (lambda: _cifar_pickle({b"data": np.zeros((2, 3072), np.uint8)})[:-20], "corrupt or truncated"),
    (lambda: b"not a pickle at all", "corrupt"),
    (lambda: _cifar_pickle({b"data": np.zeros((2, 100), np.uint8)}), "uint8 array"),
    (lambda: _cifar_pickle([1, 2, 3]), "dict"),
    (lambda: _cifar_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}), "labels"),
])
def test_cifar_refuses_unsafe_or_corrupt_batches(tmp_path, payload, match):
    path = tmp_path / "test_batch"
    path.write_bytes(payload())
    with pytest.raises(LemmseInputError, match=match) as err:
        read_batch(path)
    assert str(path) in str(err.value)


def test_cifar_missing_batch_is_named(tmp_path, monkeypatch):
    import lemmse.data.cifar10 as cifar

    monkeypatch.setattr(cifar, "PER_BATCH", 3)
    folder, _ = _write_cifar(tmp_path / "c", per_batch=3)
    os.remove(folder / "data_batch_2")
    with pytest.raises(LemmseInputError, match="data_batch_2"):
        prepare_dataset("cifar10", tmp_path / "o.zarr", root=tmp_path / "c", train_size=5, test_size=1)
    with pytest.raises(LemmseInputError, match="train_size=16"):
        prepare_dataset("cifar10", tmp_path / "o.zarr", root=tmp_path / "c", train_size=16, test_size=1)
    assert not (tmp_path / "o.zarr").exists()


# ---------------------------------------------------------------------------------------- FFHQ
def _write_pngs(folder, n=6, size=8, zip_path=None):
    images = RNG.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    names = [f"{k // 3:02d}000/{k:05d}.png" for k in range(n)]  # official thumbnails: sub-folders
    if zip_path is None:
        for name, image in zip(reversed(names), images[::-1]):  # written out of order on purpose
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / name)
    else:
        with zipfile.ZipFile(zip_path, "w") as zf:
            for name, image in zip(reversed(names), images[::-1]):
                buf = io.BytesIO()
                Image.fromarray(image).save(buf, format="PNG")
                zf.writestr(name, buf.getvalue())
    return images


@pytest.mark.parametrize("as_zip", [False, True])
def test_ffhq_from_folder_or_zip_box_filtered(tmp_path, as_zip):
    zip_path = tmp_path / "ffhq.zip" if as_zip else None
    (tmp_path / "ffhq").mkdir()
    images = _write_pngs(tmp_path / "ffhq", n=6, size=32, zip_path=zip_path)
    root = zip_path or tmp_path / "ffhq"
    out = prepare_dataset("ffhq", tmp_path / "f.zarr", root=root, resolution=16, train_size=3, test_start=4, test_size=2)
    ds = xr.open_zarr(out)
    assert ds.train.shape == (3, 3, 16, 16) and ds.test.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(ds.test_source_index.values, [4, 5])
    x = images.transpose(0, 3, 1, 2) / 255.0
    expected = x.reshape(6, 3, 16, 2, 16, 2).mean(axis=(3, 5))  # integer factor: exact 2x2 averages
    np.testing.assert_allclose(ds.train.values, expected[:3], atol=2e-7)
    np.testing.assert_allclose(ds.test.values, expected[4:6], atol=2e-7)


def test_ffhq_bad_inputs(tmp_path):
    (tmp_path / "ffhq").mkdir()
    _write_pngs(tmp_path / "ffhq", n=4, size=16)
    cfg = dict(root=tmp_path / "ffhq", train_size=2, test_start=2, test_size=2)
    with pytest.raises(LemmseInputError, match="resolution=32"):
        prepare_dataset("ffhq", tmp_path / "o.zarr", resolution=32, **cfg)
    with pytest.raises(LemmseInputError, match="test_size=3"):
        prepare_dataset("ffhq", tmp_path / "o.zarr", resolution=16, **{**cfg, "test_size": 3})
    with pytest.raises(LemmseInputError, match="download"):
        prepare_dataset("ffhq", tmp_path / "o.zarr", resolution=16, download=True, **cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LemmseInputError, match="no .png"):
        prepare_dataset("ffhq", tmp_path / "o.zarr", root=tmp_path / "empty", resolution=16)
    bad = tmp_path / "ffhq" / "01000" / "00003.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(LemmseInputError, match="00003.png"):
        prepare_dataset("ffhq", tmp_path / "o.zarr", resolution=16, **cfg)
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(LemmseInputError, match="bad.zip"):
        prepare_dataset("ffhq", tmp_path / "o.zarr", root=tmp_path / "bad.zip", resolution=16)
    assert not (tmp_path / "o.zarr").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.zarr")]
