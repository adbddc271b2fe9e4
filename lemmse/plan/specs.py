r"""Pre-inverse and estimator labels, resolved once from the config into typed specs.

A config names pre-inverses and estimators by label (``tik1e-2``, ``smoothed-s0.01``); what a
label means (its kind, λ, smoothing) is read here and nowhere else. :func:`preinverse_specs` and
:func:`estimator_specs` are called once by :func:`lemmse.plan.sweep.make_plan`; every consumer (the
job records, gather, the figures' store lookups, the Snakefile's wildcard constraints) asks the
resulting mapping. A label the config does not define is refused, naming the config key.

:data:`BUILTIN_ESTIMATORS` is THE list of estimator labels that need no config entry (the
memorisation stage computes MMSE, E-MMSE and LE-MMSE stores under these labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from lemmse.errors import LemmseInputError

#: Estimator labels usable without a config entry: label == kind.
BUILTIN_ESTIMATORS = ("mmse", "emmse", "lemmse")
#: Estimator kinds a network is compared with (the LE-MMSE family).
LEMMSE_KINDS = ("lemmse", "smoothed")
#: Display names of the pre-inverse kinds (``B = …``).
PREINVERSE_NAMES = {"identity": "B = I", "adjoint": "B = Aᵀ", "pinv": "B = A⁺", "tikhonov": "B = Tikhonov"}


@dataclass(frozen=True)
class PreInverse:
    """A pre-inverse label of the config: ``kind`` (identity, adjoint, pinv, tikhonov) and ``lam``."""

    label: str
    kind: str
    lam: float | None = None

    @property
    def agnostic(self) -> bool:
        """B = I: the network never sees the operator (physics-agnostic)."""
        return self.kind == "identity"

    @property
    def name(self) -> str:
        """``B = I``, ``B = A⁺``, ``B = Tikhonov, λ = 0.01``."""
        return PREINVERSE_NAMES[self.kind] + (f", λ = {self.lam:g}" if self.kind == "tikhonov" else "")

    def options(self) -> dict[str, Any]:
        """``preinverse`` and ``lam`` keywords of the operators, estimators and training."""
        return {"preinverse": self.kind, "lam": self.lam}


@dataclass(frozen=True)
class Estimator:
    """An estimator label: ``kind`` (mmse, emmse, lemmse, smoothed) and its options."""

    label: str
    kind: str
    smoothing: float = 0.0  # s of the smoothed LE-MMSE (0 otherwise)
    samples: int | None = None  # Monte-Carlo draws of the smoothed LE-MMSE

    @property
    def patched(self) -> bool:
        """Whether the estimator works on P×P patches (LE-MMSE family) rather than whole images."""
        return self.kind in LEMMSE_KINDS

    def options(self, seed: int) -> dict[str, Any]:
        """Keywords of :func:`lemmse.estimators.estimate` (but the data, σ, task, patch)."""
        options: dict[str, Any] = {"estimator": self.kind}
        if self.kind == "smoothed":
            options.update(smoothing=float(self.smoothing), samples=int(self.samples), seed=int(seed))
        return options


def preinverse_specs(config: Mapping[str, Any]) -> dict[str, PreInverse]:
    """Every pre-inverse label of ``config["preinverses"]`` resolved."""
    return {label: PreInverse(label, str(p["kind"]), float(p["lam"]) if p.get("lam") is not None else None)
            for label, p in config["preinverses"].items()}


def estimator_specs(config: Mapping[str, Any]) -> dict[str, Estimator]:
    """Every estimator label of ``config["estimators"]`` resolved, plus the built-in labels it does not
    redefine (:data:`BUILTIN_ESTIMATORS`)."""
    specs = {label: Estimator(label, label) for label in BUILTIN_ESTIMATORS}
    for label, e in config["estimators"].items():
        smoothed = e["kind"] == "smoothed"
        specs[label] = Estimator(label, str(e["kind"]), float(e["smoothing"]) if smoothed else 0.0,
                                 int(e["samples"]) if smoothed else None)
    return specs


def lookup(specs: Mapping[str, Any], label: str, section: str):
    """``specs[label]``, or an error naming the config section that lacks it."""
    try:
        return specs[label]
    except KeyError:
        raise LemmseInputError(f"unknown {section} label {label!r}; define it under {section} "
                               f"(known: {', '.join(specs)})") from None
