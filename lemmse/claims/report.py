r"""The claims table and its Markdown/CSV report.

:func:`compute_claims` runs every registered check (:mod:`lemmse.claims.checks`) and returns one
row per claim; :func:`write_claims` writes ``claims.md`` (the configuration, the thresholds and the
conventions stated first) and ``claims.csv``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from lemmse.claims import checks  # noqa: F401 - registers the claims
from lemmse.claims.breakdown import agreement_breakdown, breakdown_markdown
from lemmse.claims.core import (DENSITY_IMAGE, DENSITY_PATCH, MASS, NOT_COVERED, REGISTRY, VERDICTS, Inputs,
                                Settings, preinverse_kinds)
from lemmse.claims.stats import NotCovered

log = logging.getLogger(__name__)

COLUMNS = ("id", "claim", "where", "statistic", "value", "ci_low", "ci_high", "verdict", "detail", "cells")

CONVENTIONS = (
    "Cells: a cell fixes every sweep coordinate (data set, evaluation data set, task, pre-inverse, architecture, "
    "P, N, estimator, s, σ, split); its images are summarised by their mean (PSNR in dB, then averaged) unless "
    "the statistic says otherwise. A claim compares cells only along its own axis and never pools unlike cells.",
    f"Density: the paper's convention, `{DENSITY_PATCH}` / `{DENSITY_IMAGE}` (log-sum-exp of the LE-MMSE logits, no "
    "Gaussian constants; MATH.md, 'Diagnostics').",
    f"Mass: `{MASS}`, the 99 %-mass count averaged over observed pixels (hidden pixels count ⌈0.99·D·S₀⌉ by "
    "construction).",
    "Patchwork source: the paper's single-patch source map (§D.5).",
    "Memorisation: distance to the training set minimised over training images and circular shifts.",
    "Intervals: percentile bootstrap over images, resampled within each cell (seeded per claim and cell).",
)


def compute_claims(metrics: pd.DataFrame, analytic: pd.DataFrame, *,
                   variance: Mapping[str, str | os.PathLike] | None = None, netpairs: pd.DataFrame | None = None,
                   estimator_pairs: pd.DataFrame | None = None, memorisation: pd.DataFrame | None = None,
                   timings: pd.DataFrame | None = None, resolutions: Mapping[str, int] | None = None,
                   preinverses: Mapping[str, Any] | None = None, settings: Settings | None = None,
                   only: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per claim (``COLUMNS``); ``verdict`` is one of ``VERDICTS``.

    ``variance`` maps a task to its fig4 variance store; ``preinverses`` maps a pre-inverse label to
    its kind (a string, or the config's ``{kind: ..., lam: ...}``). Absent inputs make the claims
    that need them "not covered", with the reason. ``only``: the ids of the claims to compute
    (default all).
    """
    known = [c.id for c in REGISTRY]
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown claim id(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kinds = preinverse_kinds(preinverses, metrics, analytic)
    inp = Inputs(metrics=metrics, analytic=analytic, netpairs=netpairs, estimator_pairs=estimator_pairs,
                 memorisation=memorisation, timings=timings,
                 variance={t: Path(p) for t, p in (variance or {}).items()},
                 resolutions=dict(resolutions or {}), preinverses=kinds, settings=settings or Settings())
    rows = []
    for c in REGISTRY:
        if only is not None and c.id not in only:
            continue
        try:
            out = c.check(inp)
            rows.append(dict(id=c.id, claim=c.text, where=c.where, statistic=out.statistic, value=out.value,
                             ci_low=out.low, ci_high=out.high, verdict=out.verdict, detail=out.detail,
                             cells=out.cells))
        except NotCovered as why:
            rows.append(dict(id=c.id, claim=c.text, where=c.where, statistic="—", value=np.nan, ci_low=np.nan,
                             ci_high=np.nan, verdict=NOT_COVERED, detail=str(why), cells=0))
        log.info("claim %s: %s", c.id, rows[-1]["verdict"])
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _config_block(config: Mapping[str, Any] | None) -> list[str]:
    if not config:
        return []
    import yaml

    return ["<details><summary>Configuration</summary>", "", "```yaml",
            yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True).rstrip(), "```", "", "</details>", ""]


def _number(x: float) -> str:
    """NaN (no value) as a dash; ±∞ (e.g. the PSNR of identical outputs) as ±∞."""
    if np.isnan(x):
        return "—"
    return ("∞" if x > 0 else "−∞") if np.isinf(x) else f"{x:.3g}"


def write_claims(claims: pd.DataFrame, out_md: str | os.PathLike, out_csv: str | os.PathLike, *, config_label: str,
                 config: Mapping[str, Any] | None = None, settings: Settings | None = None,
                 metrics: pd.DataFrame | None = None) -> None:
    """Write the claims table as Markdown (configuration, thresholds and conventions first) and CSV.

    With ``metrics``, the Markdown ends with the agreement claim per configuration
    (:func:`lemmse.claims.breakdown.agreement_breakdown`)."""
    settings = settings or Settings()
    out_md, out_csv = Path(out_md), Path(out_csv)
    for p in (out_md, out_csv):
        p.parent.mkdir(parents=True, exist_ok=True)
    claims.assign(config=config_label).to_csv(out_csv, index=False)
    counts = claims["verdict"].value_counts()
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["# The paper's claims on our numbers", "",
             f"Computed from the configuration **{config_label}** (arXiv 2601.10334). "
             + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".", "",
             *_config_block(config), "## Conventions", "", *[f"- {c}" for c in CONVENTIONS],
             "- Thresholds and bootstrap: " + ", ".join(f"{f.name} = {getattr(settings, f.name)}"
                                                        for f in dataclasses.fields(settings)) + ".", "",
             "## Claims", "",
             "| claim | where | statistic | value [95 % CI] | verdict | detail |", "|---|---|---|---|---|---|"]
    for r in claims.itertuples(index=False):
        ci = f" [{_number(r.ci_low)}, {_number(r.ci_high)}]" if not np.isnan(r.ci_low) else ""
        lines.append(f"| {esc(r.claim)} | {esc(r.where)} | {esc(r.statistic)} | {_number(r.value)}{ci} | "
                     f"**{r.verdict}** | {esc(r.detail)} |")
    if metrics is not None:
        table = agreement_breakdown(metrics, settings.agreement_db, settings.agreement_floor)
        lines += ["", *breakdown_markdown(table, settings.agreement_db, settings.agreement_floor)]
    out_md.write_text("\n".join(lines) + "\n")
