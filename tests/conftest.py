"""Shared fixtures: the benchmark images in ``shared/bench/data`` and a CPU/CUDA ``device``.

The data folder lives beside the repository (``<repo>/../shared/bench/data``); tests that need
it are skipped with a message naming the missing path when it is absent.
"""
from __future__ import annotations

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


@pytest.fixture(scope="session")
def bench_data_dir() -> Path:
    """Folder holding ``digits16.npy``, ``color16.npy`` and ``test_noise.npy``."""
    if not BENCH_DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {BENCH_DATA_DIR} (expected shared/ beside the repository)")
    return BENCH_DATA_DIR


def _load(folder: Path, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    path = folder / name
    if not path.is_file():
        pytest.skip(f"benchmark file {path} is missing")
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
