"""Shared fixtures: the benchmark images in ``shared/bench/data`` and a CPU/CUDA ``device``.

The data folder lives beside the repository (``<repo>/../shared/bench/data``). Every file is
checked against the SHA-256 of its ``manifest.json`` before use. Where the folder is absent, tests
that need it fail naming the path — CI must run them — except on a developer's machine that sets
``LEMMSE_ALLOW_MISSING_BENCH=1``, where they are skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

#: The SLURM cluster fixture (tests/fixtures_slurm.py).
pytest_plugins = ["fixtures_slurm"]

# Estimators take seconds on the first call (FFT plans, thread pools): no per-example deadline.
settings.register_profile("lemmse", deadline=None)
settings.load_profile("lemmse")

BENCH_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "bench" / "data"


def _missing(message: str):
    """Missing benchmark data: an error, unless a developer opted into skipping."""
    if os.environ.get("LEMMSE_ALLOW_MISSING_BENCH") == "1" and os.environ.get("CI") != "true":
        pytest.skip(message)
    pytest.fail(message + " (set LEMMSE_ALLOW_MISSING_BENCH=1 to skip these tests outside CI)", pytrace=False)


@pytest.fixture(scope="session")
def bench_data_dir() -> Path:
    """Folder holding ``digits16.npy``, ``color16.npy``, ``test_noise.npy`` and ``manifest.json``."""
    if not BENCH_DATA_DIR.is_dir():
        _missing(f"benchmark data not found at {BENCH_DATA_DIR} (expected shared/ beside the repository)")
    return BENCH_DATA_DIR


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(folder: Path, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    path = folder / name
    if not path.is_file():
        _missing(f"benchmark file {path} is missing")
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    expected = manifest[name]["sha256"]
    assert _sha256(path) == expected, f"{path}: SHA-256 differs from {folder / 'manifest.json'} ({expected})"
    array = np.load(path)
    assert array.shape == shape and array.dtype == np.float32, f"{path}: {array.shape} {array.dtype}"
    return torch.from_numpy(array)


@pytest.fixture(scope="session")
def digits16(bench_data_dir: Path) -> torch.Tensor:
    """scikit-learn digits upsampled to 16×16: float32 ``(1797, 1, 16, 16)`` in [0, 1]."""
    return _load(bench_data_dir, "digits16.npy", (1797, 1, 16, 16))


@pytest.fixture(scope="session")
def color16(bench_data_dir: Path) -> torch.Tensor:
    """16×16 colour tiles of scikit-image photos: float32 ``(1100, 3, 16, 16)`` in [0, 1]."""
    return _load(bench_data_dir, "color16.npy", (1100, 3, 16, 16))


@pytest.fixture(scope="session")
def test_noise(bench_data_dir: Path) -> torch.Tensor:
    """Standard normal draws: float32 ``(8, 3, 16, 16)``; measurement k uses ``test_noise[k, :C]``."""
    return _load(bench_data_dir, "test_noise.npy", (8, 3, 16, 16))


@pytest.fixture(params=["cpu", "cuda"])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device the test should run on; CUDA is skipped when no GPU is visible."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (training tests: steadier timing, bitwise-stable sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
