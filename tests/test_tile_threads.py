"""Query tiles on several threads (lemmse.estimators.tile_threads): the same bits as one thread,
errors raised in the caller, PyTorch's thread count restored, and serial numba kernels that fill
the same histogram rows as the parallel ones."""
from __future__ import annotations

import math

import threading

import pytest
import torch

from lemmse.estimators import binning, estimate, tile_threads
from lemmse.estimators.stream import score_stats


@pytest.fixture
def torch_threads():
    """Set PyTorch's CPU threads inside a test; restored after it."""
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


def _problem(digits16, test_noise, task: str, sigma: float):
    from lemmse.operators import make_problem

    train = digits16[:120]
    x = digits16[1500:1506].to(torch.float64)
    problem = make_problem(task, (16, 16), **({"blur_std": 1.0} if task == "deconvolution" else {}))
    y = problem.A(x) + sigma * test_noise[:6, :1].to(torch.float64)
    return train, y.to(torch.float32)


@pytest.mark.parametrize("task, preinverse, sigma", [("denoising", "identity", 0.05), ("deconvolution", "identity", 0.3),
                                                     ("inpainting", "identity", 0.01)])
def test_two_threads_give_the_bits_of_one(digits16, test_noise, torch_threads, monkeypatch, task, preinverse, sigma):
    """Estimate and every diagnostic (the histogram's numba kernels included) on real digits, in many
    tiles: bit-identical on 1 and 2 threads, and the 2-thread run did put its tiles on 2 workers."""
    train, y = _problem(digits16, test_noise, task, sigma)
    kwargs = dict(task=task, estimator="lemmse", sigma=sigma, preinverse=preinverse, patch=5, diagnostics=True,
                  key_block=2048, query_block=64, **({"hole": 5} if task == "inpainting" else {}),
                  **({"blur_std": 1.0} if task == "deconvolution" else {}))
    workers, threads_seen = [], set()
    run_tiles = tile_threads.run_tiles

    def spy(work, tiles, n):
        workers.append(n)

        def traced(tile):
            threads_seen.add(threading.get_ident())
            work(tile)

        run_tiles(traced, tiles, n)

    monkeypatch.setattr(tile_threads, "run_tiles", spy)
    results = []
    for threads in (1, 2):
        torch_threads(threads)
        workers.clear(), threads_seen.clear()
        with score_stats() as stats:
            results.append(estimate(train, y, **kwargs))
        if task == "denoising":  # the fp32 screen ran in the workers too, not only dense tiles
            assert stats.rescored < stats.pairs / 2
        assert max(workers) == threads and len(threads_seen) == threads
        assert torch.get_num_threads() == threads  # restored after every block
    one, two = results
    assert torch.equal(one.xhat, two.xhat)
    assert one.diagnostics.keys() == two.diagnostics.keys() and "mass99" in one.diagnostics
    for name in one.diagnostics:
        assert torch.equal(one.diagnostics[name], two.diagnostics[name]), name


def test_a_failing_tile_raises_in_the_caller_and_restores_the_threads(torch_threads):
    torch_threads(2)
    done = []

    def work(tile: slice) -> None:
        if tile.start == 3:
            raise ValueError("tile 3 is broken")
        assert torch.get_num_threads() == 1  # every tile runs single-threaded
        done.append(tile.start)

    with pytest.raises(ValueError, match="tile 3 is broken"):
        tile_threads.run_tiles(work, [slice(i, i + 1) for i in range(8)], 2)
    assert torch.get_num_threads() == 2
    assert 3 not in done
    done.clear()
    tile_threads.run_tiles(work, [slice(i, i + 1) for i in range(3)], 2)  # the pool still works
    assert sorted(done) == [0, 1, 2]


def test_workers_follow_the_threads_and_stay_serial_where_they_must(torch_threads, monkeypatch):
    torch_threads(2)
    cpu = torch.device("cpu")
    assert tile_threads.workers_for(10, cpu) == 2
    assert tile_threads.workers_for(1, cpu) == 1  # one tile: its operations use the threads
    assert tile_threads.workers_for(10, torch.device("cuda")) == 1
    seen = []
    tile_threads.run_tiles(lambda t: seen.append(tile_threads.workers_for(10, cpu)), [slice(0, 1), slice(1, 2)], 2)
    assert seen == [1, 1]  # no nested workers
    monkeypatch.setattr(tile_threads, "ENABLED", False)
    assert tile_threads.workers_for(10, cpu) == 1
    torch_threads(1)
    monkeypatch.setattr(tile_threads, "ENABLED", True)
    assert tile_threads.workers_for(10, cpu) == 1


def test_serial_binning_kernels_fill_the_rows_of_the_parallel_ones(torch_threads):
    """The kernels a tile worker (or one thread) runs and the prange ones give the same sums."""
    gen = torch.Generator().manual_seed(7)
    v = torch.exp(-30 * torch.rand(48, 700, generator=gen))
    floor = torch.full((48,), (127 - 2) << 23, dtype=torch.int64)  # keys below 1/4 are cut
    # anchors 10 octaves up: rows stay, move 0, 1, 2 octaves (128 columns each) or are cleared (≥ 4)
    shift = torch.tensor([0.0, 9.0, 10.0, 10.5, 11.0, 13.0, 20.0] * 7)[:48].to(torch.float64) * math.log(2)
    out = []
    for threads in (1, 2):
        torch_threads(threads)
        assert binning._serial() == (threads == 1)
        sums = torch.zeros(50, 512, dtype=torch.int64)
        anchor = torch.full((50,), 10.0, dtype=torch.float64)
        binning.bin_rows(sums, 2, v, floor, base=(127 - 3) << 23, low=16, mask=(1 << 23) - 1, one=1 << 33,
                         underflow=64)
        binning.raise_rows(sums, anchor, 2, shift, hi_bits=7, n_bins=448, headroom=1.0)
        out.append((sums, anchor))
    assert int(out[0][0].count_nonzero()) > 500
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert out[0][1][2:].unique().numel() > 3  # several anchors moved, by different amounts
