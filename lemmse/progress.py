"""Progress bars that stay quiet when nobody watches (not a terminal, or disabled)."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(items: Iterable[T], *, enabled: bool, desc: str, unit: str = "it") -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar on stderr when ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return items
    return tqdm(items, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
