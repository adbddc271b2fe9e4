"""What every dataset source hands to :func:`lemmse.data.prepare_dataset`, and the shared checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from lemmse.errors import LemmseInputError


@dataclass
class SplitImages:
    """A prepared train/test split: float32 ``(N, C, H, W)`` arrays in [0, 1] plus provenance.

    ``train_index``/``test_index`` give each image's position in the source's own order (the
    bundled array, the shuffled tile pool, the sorted file list, the official file), so every
    image can be traced back. ``attrs`` holds ``source``, ``licence``, ``url``, ``preprocessing``
    (the recipe, in words) and ``split`` (the split rule, in words).
    """

    train: np.ndarray
    test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    ``defaults`` lists every config key the dataset accepts, with its default (unknown keys are
    refused). ``check(config)`` validates a resolved config cheaply (sizes against what the
    source has, resolution, files present and readable headers) and raises
    :class:`~lemmse.errors.LemmseInputError` naming the offending value; ``build(config)`` then
    does the work. ``channels(config)`` is the channel count of the result; ``defaults["ood"]``
    names the default out-of-distribution partner (another dataset with as many channels).
    """

    name: str
    summary: str
    defaults: Mapping[str, Any]
    channels: Callable[[dict], int]
    check: Callable[[dict], None]
    build: Callable[[dict], SplitImages]


def check_pool_split(name: str, available: int, train_size: int, test_start: int, test_size: int) -> None:
    """Train = pool ``[0, train_size)``, test = pool ``[test_start, test_start + test_size)``; both must fit."""
    if train_size > test_start:
        raise LemmseInputError(
            f"{name}: train_size={train_size} exceeds test_start={test_start} (the training images are the "
            f"first {test_start} of the pool; test images start there)")
    if test_start + test_size > available:
        raise LemmseInputError(
            f"{name}: test_start={test_start} + test_size={test_size} exceeds the {available} images the source has")


def check_size(name: str, key: str, value: int, available: int) -> None:
    """Refuse ``value`` (config ``key``) larger than the ``available`` images."""
    if value > available:
        raise LemmseInputError(f"{name}: {key}={value} exceeds the {available} images the source has")


def check_resolution(name: str, resolution: int, allowed: tuple[int, ...]) -> None:
    if resolution not in allowed:
        raise LemmseInputError(
            f"{name}: resolution={resolution} is not one the source can give; choose one of "
            f"{', '.join(map(str, allowed))}")


def pool_split(pool: np.ndarray, config: Mapping[str, Any], attrs: dict[str, Any]) -> SplitImages:
    """Cut an ordered pool with ``train_size``, ``test_start``, ``test_size`` (already checked)."""
    n_train, start, n_test = config["train_size"], config["test_start"], config["test_size"]
    test_index = np.arange(start, start + n_test)
    return SplitImages(train=pool[:n_train], test=pool[start:start + n_test],
                       train_index=np.arange(n_train), test_index=test_index, attrs=attrs)
