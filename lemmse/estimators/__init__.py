"""Closed-form estimators: MMSE, E-MMSE, LE-MMSE (cases 1–3), smoothed LE-MMSE, diagnostics.

Exports are imported on first use (:mod:`lemmse.lazy`): the diagnostic names
(:mod:`lemmse.estimators.names`) are read by workflow jobs that never run an estimator.
"""
from __future__ import annotations

from lemmse.lazy import lazy_exports

_EXPORTS = {"ESTIMATORS": "api", "EstimateResult": "api", "estimate": "api", "estimate_with": "api",
            "lemmse_general": "oracle"}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
