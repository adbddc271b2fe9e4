"""Closed-form estimators: MMSE, E-MMSE, LE-MMSE (cases 1–3), smoothed LE-MMSE, diagnostics."""
from lemmse.estimators.api import ESTIMATORS, EstimateResult, estimate, estimate_with
from lemmse.estimators.oracle import lemmse_general

__all__ = ["ESTIMATORS", "EstimateResult", "estimate", "estimate_with", "lemmse_general"]
