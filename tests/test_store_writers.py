"""Many writers on one store at once, a misaligned one refused, and failed writes (disk full,
read-only, a file in the way) that name the path and leave nothing looking complete.

Real Zarr stores, real processes. Read-only and disk-full folders are real mounts (a read-only
bind mount, a 1 MiB tmpfs) where this machine allows mounting (root; CI runs as root, and root
ignores permission bits, so chmod cannot make a folder read-only for it); elsewhere those tests
are skipped, and the disk-full path is also checked with the OS write replaced by one that fails
with ENOSPC (monkeypatched), which runs everywhere.
"""
from __future__ import annotations

import errno
import multiprocessing
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from lemmse.errors import LemmseInputError
from lemmse.store import (StoreWriteError, VariableSpec, atomic_store, atomic_write_text, create_template,
                          is_complete, mark_complete, open_dataset, require_writable, save_dataset, write_region)

N_IMAGE, CHUNK_IMAGE, N_SIGMA = 64, 4, 4
WRITERS = 8  # aligned writers; one more writes a misaligned region
SPLITS = ("train", "test")


def _template(path: Path) -> None:
    create_template(path, coords={"split": list(SPLITS), "image": np.arange(N_IMAGE), "sigma": np.arange(N_SIGMA) / 10},
                    sizes={"c": 2, "h": 3},
                    variables={"x": VariableSpec(("split", "image", "sigma", "c", "h"), (1, CHUNK_IMAGE, 1, 2, 3)),
                               "d": VariableSpec(("split", "image", "sigma"), (1, CHUNK_IMAGE, 1), "float64")},
                    attrs={"test": "writers"})


def _block(split: int, images: slice, sigma: int) -> dict[str, np.ndarray]:
    """The values of one region: a function of its coordinates only (what a shard computes)."""
    rng = np.random.default_rng([split, images.start, sigma])
    n = images.stop - images.start
    return {"x": rng.standard_normal((1, n, 1, 2, 3)).astype(np.float32), "d": rng.standard_normal((1, n, 1))}


def _regions(writer: int) -> list[tuple[int, slice, int]]:
    """Writer k owns every (split, image block, σ) whose flat index is k mod WRITERS: 8 disjoint sets."""
    blocks = [(s, slice(i, i + CHUNK_IMAGE), g) for s in range(len(SPLITS))
              for i in range(0, N_IMAGE, CHUNK_IMAGE) for g in range(N_SIGMA)]
    return blocks[writer::WRITERS]


def _write(path: Path, regions, go: Path | None = None) -> None:
    if go is not None:  # start together: wait for the go file
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    for split, images, sigma in regions:
        write_region(path, _block(split, images, sigma),
                     {"split": slice(split, split + 1), "image": images, "sigma": slice(sigma, sigma + 1)})


def _writer_process(path: str, writer: int, go: str) -> str:
    try:
        _write(Path(path), _regions(writer), Path(go))
        return "ok"
    except Exception as err:  # reported to the parent, which asserts on it
        return f"{type(err).__name__}: {err}"


def _misaligned_process(path: str, go: str) -> str:
    try:  # images 2..6 straddle the chunks 0..4 and 4..8
        _write(Path(path), [(0, slice(2, 6), 0)], Path(go))
        return "written"
    except LemmseInputError as err:
        return f"refused: {err}"


def _chunk_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.slow
def test_eight_parallel_writers_equal_a_serial_run_and_a_misaligned_one_is_refused(tmp_path):
    serial, parallel, go = tmp_path / "serial.zarr", tmp_path / "parallel.zarr", tmp_path / "go"
    _template(serial)
    for writer in range(WRITERS):
        _write(serial, _regions(writer))

    _template(parallel)
    before = _chunk_files(parallel)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no state shared with pytest
    with ctx.Pool(WRITERS + 1) as pool:
        aligned = [pool.apply_async(_writer_process, (str(parallel), k, str(go))) for k in range(WRITERS)]
        misaligned = pool.apply_async(_misaligned_process, (str(parallel), str(go)))
        time.sleep(0.5)  # let the workers start; correctness does not depend on it
        go.touch()
        results = [r.get(timeout=600) for r in aligned]
        refused = misaligned.get(timeout=600)
    assert results == ["ok"] * WRITERS
    assert refused.startswith("refused:") and "not aligned to its chunks of 4 along 'image'" in refused, refused

    # zero lost or altered values: every array equal to the serial run, byte for byte per chunk
    a, b = open_dataset(serial, complete=False), open_dataset(parallel, complete=False)
    for var in ("x", "d"):
        assert not np.isnan(b[var].values).any(), f"{var}: values lost"
        assert np.array_equal(a[var].values, b[var].values), f"{var}: values altered"
    chunks_serial, chunks_parallel = _chunk_files(serial), _chunk_files(parallel)
    assert chunks_parallel == chunks_serial
    assert len(chunks_parallel) - len(before) == 2 * len(SPLITS) * (N_IMAGE // CHUNK_IMAGE) * N_SIGMA
    assert not [p for p in parallel.rglob("*") if ".partial" in p.name or ".tmp" in p.name]
    mark_complete(parallel)
    assert is_complete(parallel)


# --- failed writes --------------------------------------------------------------------------------

def _can_mount() -> bool:
    return os.geteuid() == 0 and subprocess.run(["which", "mount"], capture_output=True).returncode == 0


@contextmanager
def _mounted(kind: str, target: Path):
    """A read-only bind mount of an empty folder, or a 1 MiB tmpfs, at ``target``; skips if refused."""
    if not _can_mount():
        pytest.skip("mounting needs root")
    target.mkdir(parents=True)
    if kind == "ro":
        source = target.parent / f"{target.name}-src"
        source.mkdir()
        steps = [["mount", "--bind", str(source), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]]
    else:
        steps = [["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)]]
    for i, cmd in enumerate(steps):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            if i:
                subprocess.run(["umount", str(target)], check=False)
            pytest.skip(f"cannot mount here ({' '.join(cmd)}: {done.stderr.strip()})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _no_leftovers(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if ".tmp" in p.name or ".partial" in p.name]
    assert not left, left


def test_read_only_results_folder_fails_up_front_naming_the_path(tmp_path):
    with _mounted("ro", tmp_path / "results") as results:
        store = results / "analytic" / "s.zarr"
        with pytest.raises(StoreWriteError, match=f"cannot write store {store}: .*read-only file system") as info:
            _template(store)
        assert info.value.errno == errno.EROFS
        with pytest.raises(StoreWriteError, match="read-only"):
            require_writable(results / "models")
        with pytest.raises(StoreWriteError, match=f"{results / 'm.done'}.*read-only"):
            atomic_write_text(results / "m.done", "x")
        assert list(results.iterdir()) == []


def test_a_file_where_the_results_folder_should_be(tmp_path):
    """Works as root too: no permission bits involved."""
    (tmp_path / "results").write_text("not a folder")
    store = tmp_path / "results" / "a" / "s.zarr"
    with pytest.raises(StoreWriteError, match=f"cannot write store {store}: {tmp_path / 'results'} is a file"):
        _template(store)
    with pytest.raises(StoreWriteError, match=f"cannot write file {tmp_path / 'results' / 'x.done'}"):
        atomic_write_text(tmp_path / "results" / "x.done", "1")
    from lemmse.training import TrainConfig, train
    with pytest.raises(StoreWriteError, match=f"training run into {tmp_path / 'results' / 'net'}"):
        train(tmp_path / "results" / "net", TrainConfig(arch="resnet", patch=3, steps=1), np.zeros((4, 1, 8, 8), "f4"))


def test_disk_full_on_a_real_tmpfs(tmp_path):
    with _mounted("tmpfs", tmp_path / "small") as small:
        store = small / "s.zarr"
        _template(store)
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        (small / "filler").write_bytes(b"\0" * (free - 8192))  # leave two pages
        noise = np.random.default_rng(0).standard_normal((1, N_IMAGE, N_SIGMA, 2, 3)).astype("f4")  # 12 KiB
        with pytest.raises(StoreWriteError, match=f"cannot write region of store {store}: no space left") as info:
            write_region(store, {"x": noise}, {"split": slice(0, 1)})
        assert info.value.errno == errno.ENOSPC
        assert not is_complete(store)
        _no_leftovers(small)
        with pytest.raises(StoreWriteError, match=f"cannot write file {small / 'marker.json'}: no space left"):
            atomic_write_text(small / "marker.json", "y" * 65536)
        assert not (small / "marker.json").exists()
        _no_leftovers(small)
        # every chunk that did land is whole: it decodes to the values written
        x = open_dataset(store, complete=False)["x"].values[0]
        written = ~np.isnan(x).any(axis=(2, 3))
        assert written.sum() < written.size
        assert np.array_equal(x[written], noise[0][written])


def _fail_writes_with_enospc(monkeypatch, after: int = 0) -> None:
    """Make Zarr's file write (``zarr.storage._local._put``: every chunk and metadata file) fail
    with ENOSPC after ``after`` successful calls, as a disk that fills up does."""
    from zarr.storage import _local

    real_put, calls = _local._put, {"n": 0}

    def put(path, value, exclusive=False):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_put(path, value, exclusive)

    monkeypatch.setattr(_local, "_put", put)


def test_disk_full_during_completion_leaves_the_store_incomplete(tmp_path, monkeypatch):
    import zarr

    store = tmp_path / "s.zarr"
    _template(store)
    for writer in range(WRITERS):
        _write(store, _regions(writer))

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(zarr, "consolidate_metadata", full_disk)  # .zattrs says complete, .zmetadata not
    with pytest.raises(StoreWriteError, match=f"cannot write completion mark of store {store}: no space left"):
        mark_complete(store)
    monkeypatch.undo()
    assert not is_complete(store)
    mark_complete(store)  # space again: the rerun completes it
    assert is_complete(store)


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from lemmse.training.checkpoint import load_checkpoint, save_checkpoint
    from lemmse.training.config import FORMAT

    state = {"format": FORMAT, "config": {}, "step": 1, "model": {"w": torch.ones(3)}, "ema": {},
             "optimizer": {}}
    save_checkpoint(tmp_path / "model.pt", state)
    monkeypatch.setattr(torch, "save", lambda obj, handle: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(StoreWriteError, match=f"cannot write file {tmp_path / 'model.pt'}: no space left"):
        save_checkpoint(tmp_path / "model.pt", {**state, "step": 2})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "model.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_disk_full_while_building_a_whole_store_leaves_no_target(tmp_path, monkeypatch):
    import xarray as xr

    target = tmp_path / "d.zarr"
    ds = xr.Dataset({"v": (("i",), np.arange(1000.0))})
    _fail_writes_with_enospc(monkeypatch, after=2)
    with pytest.raises(StoreWriteError, match=f"cannot write store {target}: no space left"):
        save_dataset(ds, target)
    monkeypatch.undo()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_store(target) as tmp:
        xr.Dataset({"v": (("i",), np.arange(3.0))}).to_zarr(tmp, zarr_format=2)
    assert target.exists()
