"""``model.pt``: one plain dict that is enough to resume and to know what produced it.

Keys (all plain Python / tensors, loadable with ``torch.load(..., weights_only=True)``):

``format``      ``"lemmse.train/2"``
``config``      the resolved config (the dict in ``training_options.json``)
``step``        optimiser steps done
``model``       network ``state_dict`` (the raw, last-step weights)
``ema``         EMA ``state_dict`` — the weights used for evaluation and inference
``optimizer``   Adam ``state_dict``
``rng``         ``{"torch": ByteTensor, "cuda": [ByteTensor, ...]}`` global RNG states
``log_window``  ``[loss sum, step count]`` of the ``stats.jsonl`` line in progress
``device``, ``torch_version``  where it was produced

Writes are atomic (a temporary file in the same directory, then :func:`os.replace`), so a run
killed while saving keeps its previous checkpoint.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from lemmse.errors import LemmseInputError
from lemmse.training.config import FORMAT

CHECKPOINT = "model.pt"
OPTIONS = "training_options.json"
STATS = "stats.jsonl"
REQUIRED_KEYS = ("format", "config", "step", "model", "ema", "optimizer")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (a dict with at least :data:`REQUIRED_KEYS`) to ``path``."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    _atomic_write(Path(path), lambda handle: torch.save(state, handle))


def write_options(path: str | os.PathLike, config: dict[str, Any]) -> None:
    """Atomically write the resolved config as indented JSON."""
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def checkpoint_path(location: str | os.PathLike) -> Path:
    """``location`` itself if it is a file, else ``location/model.pt``."""
    location = Path(location)
    return location / CHECKPOINT if location.is_dir() else location


def load_checkpoint(location: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (a model directory or a ``model.pt``); errors name the file."""
    path = checkpoint_path(location)
    if not path.is_file():
        raise LemmseInputError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, not a torch file, unsafe pickle
        raise LemmseInputError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise LemmseInputError(f"checkpoint {path} is not a lemmse training checkpoint (needs keys {REQUIRED_KEYS})")
    if state["format"] != FORMAT:
        raise LemmseInputError(f"checkpoint {path} has format {state['format']!r}; this version reads {FORMAT!r}")
    return state
