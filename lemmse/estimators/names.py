"""The names of the LE-MMSE diagnostics (MATH.md "Diagnostics"), torch-free.

:class:`lemmse.estimators.api.EstimateResult` documents each one; :mod:`lemmse.estimators.lemmse`
computes them; the analytic stores (:mod:`lemmse.analytic`) hold one variable per name.
"""
from __future__ import annotations

#: Per-pixel maps ``(n, H, W)``.
DIAGNOSTIC_MAPS = ("patch_log_density_paper", "patch_log_density", "mass99", "source", "source_image")
#: Per-measurement summaries ``(n,)``.
DIAGNOSTIC_SUMMARIES = ("image_log_density_paper", "image_log_density", "mass99_observed_mean",
                        "mass99_observed_median")
DIAGNOSTICS = DIAGNOSTIC_MAPS + DIAGNOSTIC_SUMMARIES
#: The diagnostics of the 99 %-mass pass: the one extra pass over the training set, so the only
#: ones a caller may leave out (``mass=False``); the others come from the estimate's own pass.
MASS_DIAGNOSTICS = ("mass99", "mass99_observed_mean", "mass99_observed_median")
