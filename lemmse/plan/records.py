r"""The job records of a plan: frozen, hashable, each knowing its wildcards (hence its paths).

* :class:`TrainingNoise` — the σ a network is trained on: a range (the paper's σ-conditioned
  network) or one fixed σ; its :attr:`~TrainingNoise.spec` is the ``sigma{spec}`` path part and the
  ``train_sigma`` column of the tables;
* :class:`NetworkRun` — one trained network; :class:`NetworkEval` — its outputs on one data set's
  measurements (at every σ of the grid, or at its own σ when trained at a fixed σ);
* :class:`AnalyticRun` — one estimator store; :class:`Shard` — one image block × σ block of it,
  the unit that owns its chunks (a shard job runs one or several consecutive shards);
* :class:`Comparison` — a network evaluation paired with an estimator store on the same ``y``:
  one block of rows of the ``metrics`` table.

Their paths are :mod:`lemmse.plan.layout`'s (``Layout(results).path(name, record)``); the methods
below are shorthands for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from lemmse.errors import LemmseInputError
from lemmse.plan.layout import Layout
from lemmse.training.sigma_spec import format_sigma_spec

#: How a study names the σ-conditioned network of ``training.sigma_min..sigma_max`` in ``train_sigmas``.
RANGE = "range"


@dataclass(frozen=True)
class TrainingNoise:
    """The training noise of a network: σ drawn from ``[low, high]`` per sample (``sampling`` uniform or
    log-uniform), or the one fixed σ ``low == high``."""

    low: float
    high: float
    sampling: str = "uniform"

    @classmethod
    def from_config(cls, item: Any, training: Mapping[str, Any]) -> "TrainingNoise":
        """One entry of a study's ``train_sigmas``: ``"range"`` (``training.sigma_min/max/sampling``), a
        number (a fixed σ) or ``{min, max, sampling}``."""
        if item == RANGE or item is None:
            return cls.of_range(training["sigma_min"], training["sigma_max"], training.get("sigma_sampling", "uniform"))
        if isinstance(item, Mapping):
            return cls.of_range(item["min"], item["max"], item.get("sampling", "uniform"))
        return cls(float(item), float(item))

    @classmethod
    def of_range(cls, low: float, high: float, sampling: str = "uniform") -> "TrainingNoise":
        low, high = float(low), float(high)
        return cls(low, high, "uniform" if low == high else sampling)

    @property
    def fixed(self) -> bool:
        """Whether the network sees one σ only (it is then evaluated at that σ only)."""
        return self.low == self.high

    @property
    def spec(self) -> str:
        """``0.05`` (fixed), ``0-1`` (uniform range), ``0.005-1log`` (log-uniform): the path part and the
        tables' ``train_sigma`` value."""
        return format_sigma_spec(self.low, self.high, self.sampling)

    def evaluated(self, grid: Iterable[float]) -> list[float]:
        """The σ of the measurement ``grid`` the network is evaluated (and compared) at: all of them
        for a range, its own σ for a fixed one (which must be on the grid)."""
        grid = [float(s) for s in grid]
        if not self.fixed:
            return grid
        on_grid = [s for s in grid if abs(s - self.low) <= 1e-12 * max(1.0, abs(s))]
        if not on_grid:
            raise LemmseInputError(f"training σ {self.low:g} is not on the measurement grid "
                                   f"({', '.join(f'{s:g}' for s in grid)}); add it to measurements.sigmas")
        return on_grid


@dataclass(frozen=True)
class NetworkRun:
    """One trained network."""

    dataset: str
    task: str
    preinverse: str
    arch: str
    patch: int
    train_size: int
    noise: TrainingNoise

    @property
    def spec(self) -> str:
        """The training σ spec (``sigma{spec}`` in paths, ``train_sigma`` in the tables)."""
        return self.noise.spec

    @property
    def wildcards(self) -> dict[str, Any]:
        """Its wildcards in the layout's patterns (:mod:`lemmse.plan.layout`)."""
        return {"dataset": self.dataset, "task": self.task, "preinverse": self.preinverse, "arch": self.arch,
                "patch": self.patch, "train_size": self.train_size, "spec": self.spec}

    def directory(self, results: Path) -> Path:
        return Layout(results).path("network_dir", self)


@dataclass(frozen=True)
class NetworkEval:
    """A network's outputs on the measurements of ``eval_dataset``."""

    run: NetworkRun
    eval_dataset: str

    @property
    def wildcards(self) -> dict[str, Any]:
        return {**self.run.wildcards, "eval_dataset": self.eval_dataset}

    def store(self, results: Path) -> Path:
        return Layout(results).path("evaluation", self)


@dataclass(frozen=True)
class AnalyticRun:
    """One analytic estimator store (all splits, images and σ of the measurement grid)."""

    dataset: str
    eval_dataset: str
    task: str
    preinverse: str
    estimator: str
    patch: int  # 0 for estimators without a patch (mmse, emmse)
    train_size: int

    @property
    def wildcards(self) -> dict[str, Any]:
        """Its wildcards in the layout's patterns (:mod:`lemmse.plan.layout`)."""
        return {"dataset": self.dataset, "eval_dataset": self.eval_dataset, "task": self.task,
                "preinverse": self.preinverse, "estimator": self.estimator, "patch": self.patch,
                "train_size": self.train_size}

    def stem(self, results: Path) -> Path:
        return Layout(results).path("analytic_stem", self)

    def store(self, results: Path) -> Path:
        return Layout(results).path("analytic_store", self)

    def complete_marker(self, results: Path) -> Path:
        return Layout(results).path("analytic_complete", self)

    def shard_marker(self, results: Path, image: int, sigma_index: int) -> Path:
        return Layout(results).path("analytic_shard", self, image=image, sigma_index=sigma_index)


@dataclass(frozen=True)
class Shard:
    """One image block × σ block of an estimator store: it owns those chunks (one writer per chunk)."""

    run: AnalyticRun
    image: int  # first image of the block
    sigma_index: int  # first σ index of the block

    @property
    def wildcards(self) -> dict[str, Any]:
        """Its wildcards in the layout's patterns: the store's, ``image`` and ``sigma_index``."""
        return {**self.run.wildcards, "image": self.image, "sigma_index": self.sigma_index}

    def marker(self, results: Path) -> Path:
        """The marker of the shard job this shard leads (:meth:`lemmse.plan.sweep.Plan.shard_jobs`)."""
        return self.run.shard_marker(results, self.image, self.sigma_index)


@dataclass(frozen=True)
class Comparison:
    """A network evaluation and the estimator store it is compared with (same y)."""

    evaluation: NetworkEval
    analytic: AnalyticRun
