r"""The paper's claims checked against our numbers, on matched cells only.

One row per claim: the paper's words and section, the statistic (threshold included), its value,
a bootstrap interval over images, and the verdict ``holds`` / ``does not hold`` / ``not covered``
(with the reason). :mod:`~lemmse.claims.stats` holds the cell and bootstrap machinery,
:mod:`~lemmse.claims.checks` the claims, :mod:`~lemmse.claims.report` the table and its report.
"""
from lemmse.claims.core import FAILS, HOLDS, NOT_COVERED, REGISTRY, VERDICTS, Settings
from lemmse.claims.report import COLUMNS, compute_claims, write_claims

#: (id, claim, where) of every claim, in report order.
CLAIMS = tuple((c.id, c.text, c.where) for c in REGISTRY)

__all__ = ["CLAIMS", "COLUMNS", "VERDICTS", "HOLDS", "FAILS", "NOT_COVERED", "Settings", "compute_claims",
           "write_claims"]
