r"""What every claim check shares: verdicts, thresholds, the inputs, the outcome, the registry.

Thresholds are fixed here, before any table is looked at; the report states each one in its
claim's statistic. Where the paper's own number was lost from its text (it prints "( dB)"), the
threshold is the nearest stated one (the 25 dB headline) or a stated convention of ours
(``few_patches``, ``often_share`` …), and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

HOLDS, FAILS, NOT_COVERED = "holds", "does not hold", "not covered"
VERDICTS = (HOLDS, FAILS, NOT_COVERED)

#: Column names (lemmse.tables): the paper's density convention (log-sum-exp of the logits, no
#: Gaussian constants) and the 99 %-mass count summarised over observed pixels.
DENSITY_PATCH = "neg_log_density_patch_paper"
DENSITY_IMAGE = "neg_log_density_image_paper"
MASS = "mass99_observed_mean"
#: Patchwork: the share of pixels whose single-patch source exists, else the number of distinct sources.
PATCHWORK = ("source_share", "distinct_sources")

#: Coordinates of one network configuration (metrics table) and of one estimator store (analytic).
NET_CONFIG = ("dataset", "eval_dataset", "task", "preinverse", "arch", "patch", "train_size", "train_sigma",
              "estimator", "smoothing")
EST_CONFIG = ("dataset", "eval_dataset", "task", "preinverse", "estimator", "smoothing", "patch", "train_size")


@dataclass(frozen=True)
class Settings:
    """Thresholds and bootstrap settings (fixed before looking at the tables)."""

    agreement_db: float = 25.0       # §4.2: "remains high (> 25 dB) across all noise levels"
    agreement_floor: float = 0.05    # the per-configuration table also says whether every σ ≥ this holds
    often_db: float = 30.0           # §D.1: "often reaching above 30 dB"
    most_share: float = 0.5          # "in most cases": more than half of the cells
    often_share: float = 0.25        # "often": at least a quarter of the cells (our reading)
    spread_db: float = 3.0           # "limited influence" of N: every spread across N ≤ 3 dB
    memorised_fraction: float = 0.25  # memorised: distance to the training set < ¼ of the truth's
    few_patches: float = 10.0        # §D.4 "few patches (even nearest neighbours)": ≤ 10 at the smallest σ
    mass_growth: float = 10.0        # "increases significantly": ≥ 10× from the smallest to the largest σ
    critical_slope: float = 2.0      # "starts to increase rapidly": a log–log step of slope ≥ 2
    pinv_mass_ratio: float = 2.0     # deconvolution: "significantly higher" mass with A⁺: median ratio ≥ 2
    blowup_db: float = 10.0          # Fig. 19 blow-up: train − test PSNR(LE-MMSE, truth) ≥ 10 dB at the smallest σ
    # Cor. 3.7: "identical" E-MMSE agree at ≥ 40 dB (RMS difference ≤ 1 % of the range; float32 rounding is
    # ≈ 140 dB, and B = A⁺ = A⁻¹ for the blur gives bit-identical stores: ∞); "not identical": some cell < 40 dB
    coincide_db: float = 40.0
    speedup: float = 10.0            # §5.1 "substantially faster": ≥ 10× per estimate
    smoothing: float | None = None   # s of the smoothing claim; None: every s of the sweep, each reported
    reps: int = 1000                 # bootstrap replicates
    seed: int = 0                    # bootstrap seed
    level: float = 0.95              # confidence level

    def __post_init__(self) -> None:
        if self.reps < 1:
            raise ValueError(f"reps must be ≥ 1, got {self.reps}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {self.level}")


@dataclass
class Inputs:
    """Everything the claims read. Only ``metrics`` and ``analytic`` are required; a claim whose
    input is ``None`` (or empty) is reported as not covered, with the reason."""

    metrics: pd.DataFrame
    analytic: pd.DataFrame
    netpairs: pd.DataFrame | None = None          # lemmse.pairs.network_pairs
    estimator_pairs: pd.DataFrame | None = None   # lemmse.pairs.preinverse_pairs
    memorisation: pd.DataFrame | None = None      # lemmse.memorisation.memorisation_table
    timings: pd.DataFrame | None = None           # lemmse.claims.timing.read_timings
    variance: Mapping[str, Path] = field(default_factory=dict)  # task -> fig4 variance store
    resolutions: Mapping[str, int] = field(default_factory=dict)  # dataset -> image side (pixels)
    #: pre-inverse label -> kind (identity, pinv, adjoint, tikhonov), resolved by :func:`preinverse_kinds`
    preinverses: Mapping[str, str] = field(default_factory=lambda: {"identity": "identity", "pinv": "pinv"})
    settings: Settings = field(default_factory=Settings)

    def kind(self, label: str) -> str | None:
        """The kind of pre-inverse ``label``, ``None`` for a label neither the config nor the tables resolve
        (never guessed from its name: such rows match no kind, so no claim reads them as B = I or A⁺)."""
        return self.preinverses.get(label)


def preinverse_kinds(preinverses: Mapping[str, Any] | None, *tables: pd.DataFrame | None) -> dict[str, str]:
    """Label -> kind: the config's ``preinverses`` section resolved by :mod:`lemmse.plan.specs` (a bare
    kind string is accepted for a label), completed by the tables' ``preinverse``/``preinverse_kind``
    columns (gather resolved them from the same config); ``identity`` and ``pinv`` name themselves."""
    from lemmse.plan.specs import preinverse_specs

    kinds = {"identity": "identity", "pinv": "pinv"}
    for table in tables:
        if table is not None and {"preinverse", "preinverse_kind"} <= set(table.columns) and len(table):
            pairs = table[["preinverse", "preinverse_kind"]].drop_duplicates()
            kinds.update({str(label): str(kind) for label, kind in pairs.itertuples(index=False, name=None)})
    if preinverses:
        section = {label: spec if isinstance(spec, Mapping) else {"kind": str(spec)} for label, spec in preinverses.items()}
        kinds.update({label: spec.kind for label, spec in preinverse_specs({"preinverses": section}).items()})
    return kinds


@dataclass(frozen=True)
class Outcome:
    """One claim's result: the statistic (words, threshold included), its value and interval."""

    statistic: str
    value: float
    low: float
    high: float
    verdict: str
    detail: str
    cells: int


def outcome(statistic: str, value: float, low: float, high: float, ok: bool, detail: str, cells: int) -> Outcome:
    return Outcome(statistic, float(value), float(low), float(high), HOLDS if bool(ok) else FAILS, detail, int(cells))


@dataclass(frozen=True)
class Claim:
    id: str
    text: str      # the paper's words
    where: str     # section and figure
    check: Callable[[Inputs], Outcome]


REGISTRY: list[Claim] = []


def claim(id: str, text: str, where: str):
    """Register ``check`` as the claim ``id`` (report order = registration order)."""
    def wrap(check: Callable[[Inputs], Outcome]) -> Callable[[Inputs], Outcome]:
        if any(c.id == id for c in REGISTRY):
            raise ValueError(f"claim {id!r} registered twice")
        REGISTRY.append(Claim(id, text, where, check))
        return check
    return wrap
