r"""Query tiles of one key block run concurrently, one PyTorch thread each (CPU).

A tile of the streaming loop (:func:`lemmse.estimators.stream.attend`) touches only its own rows
of the queries and of the consumer's state, so tiles are independent. On ``T > 1`` CPU threads
they run on ``T`` Python workers taking the next tile in order, each executing its tiles'
operations single-threaded (PyTorch intra-op threads 1, numba kernels compiled serial): a tile
runs the same operations on the same operands as on one thread, so a block of at least two
tiles gives bit-identical results at every thread count. The cores work on whole tiles instead
of splitting each small product between them, which synchronises them several times per tile
(``lemmse bench`` prints the ratio of the two, measured in one run).

Scratch buffers that a tile reuses from one to the next (the tile workspaces, the accumulator's
weights, the histogram's temporaries) are per thread (``threading.local``).
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import torch

#: Run the tiles of a block on several threads (CPU, more than one PyTorch thread); off, every
#: tile runs in turn with PyTorch's threads inside each operation (``lemmse bench`` compares both).
ENABLED = True

_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def scratch(local: threading.local) -> dict:
    """The calling thread's dictionary of reusable scratch tensors held in ``local``."""
    held = getattr(local, "held", None)
    if held is None:
        held = local.held = {}
    return held


def in_worker() -> bool:
    """Whether the calling thread runs tiles for :func:`run_tiles` (its kernels must stay serial)."""
    return getattr(_local, "worker", False)


def workers_for(n_tiles: int, device: torch.device) -> int:
    """Workers a block of ``n_tiles`` tiles runs on: PyTorch's CPU threads, at most one per tile;
    1 (serial, with PyTorch's threads inside each operation) for a single tile, on GPU, inside a
    worker, or when :data:`ENABLED` is off."""
    if not ENABLED or device.type != "cpu" or in_worker() or n_tiles < 2:
        return 1
    return max(1, min(torch.get_num_threads(), n_tiles))


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool, _pool_size = ThreadPoolExecutor(max_workers=size, thread_name_prefix="lemmse-tile"), size
        return _pool


@contextlib.contextmanager
def serial_tiles() -> Iterator[None]:
    """Within the block, run tiles in turn with PyTorch's threads inside each operation (the
    comparison ``lemmse bench`` prints)."""
    global ENABLED
    saved, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = saved


def run_tiles(work: Callable[[slice], None], tiles: Sequence[slice], workers: int) -> None:
    """Run ``work(tile)`` for every tile: serially when ``workers`` is 1, else on ``workers``
    threads taking the next tile in order, each single-threaded. The first exception is raised."""
    if workers <= 1:
        for tile in tiles:
            work(tile)
        return
    cursor = iter(range(len(tiles)))
    take = threading.Lock()
    failed: list[BaseException] = []

    def worker() -> None:
        _local.worker = True
        torch.set_num_threads(1)  # this thread's OpenMP team (already 1 in the caller)
        try:
            while not failed:
                with take:
                    i = next(cursor, None)
                if i is None:
                    return
                work(tiles[i])
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)
        finally:
            _local.worker = False

    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # MKL's thread count is global: set here, restored after every worker ends
    try:
        futures = [_executor(workers - 1).submit(worker) for _ in range(workers - 1)]
        worker()  # the calling thread works too
        for future in futures:
            future.result()
    finally:
        torch.set_num_threads(saved)
    if failed:
        raise failed[0]
