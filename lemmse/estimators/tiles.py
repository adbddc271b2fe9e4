"""How the streaming loop cuts its work: memory bound and tile sizes (no PyTorch import, so that
``lemmse estimate --help`` states the defaults without loading it)."""
from __future__ import annotations

#: Upper bound on the working memory of one estimator call (bytes): measurements are chunked to fit.
DEFAULT_MAX_MEMORY = 2**30
#: Tile of the streaming loop: keys scored per block, queries per tile.
KEY_BLOCK, QUERY_BLOCK = 4096, 256
#: The same with the 99 %-mass histogram, whose state (~28-56 kB per query) is read and written
#: once per key block: 4× longer key blocks under half as many queries per tile cross memory 4×
#: less often (``lemmse bench --diagnostics``, one thread: the full diagnostics cost ~1.5× the
#: estimate instead of 2.0-3.0×; the estimate alone is no faster with them at σ = 0.05).
MASS_KEY_BLOCK, MASS_QUERY_BLOCK = 16384, 128


def stream_blocks(mass: bool, key_block: int | None = None, query_block: int | None = None) -> tuple[int, int]:
    """``(key_block, query_block)``: the given ones, else the defaults of a stream with (``mass``)
    or without the 99 %-mass histogram."""
    keys, queries = (MASS_KEY_BLOCK, MASS_QUERY_BLOCK) if mass else (KEY_BLOCK, QUERY_BLOCK)
    return (keys if key_block is None else key_block), (queries if query_block is None else query_block)
