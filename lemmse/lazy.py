"""Package exports imported on first use (PEP 562), so that importing a package costs nothing.

Workflow jobs import ``lemmse.plan`` and little else; a package ``__init__`` that imported
its submodules eagerly would make each of them pay for PyTorch or xarray it never uses.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public name ``n`` lives in the submodule
    ``exports[n]``: assign both in the package's ``__init__`` and set ``__all__ = list(exports)``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
