"""``lemmse figures``: render one paper figure, the claims report, or the fig4 variance store.

Figures read only the gathered tables (``--tables``: ``metrics`` and ``analytic`` as .parquet or
.csv) and the stores under ``--results``; nothing is recomputed except by ``variance``, the one
compute stage (the LE-MMSE on several noise draws per image).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lemmse.cli.common import CliError, HelpFormatter, add_verbosity_flags, positive_int

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def _config(path: Path | None) -> tuple[dict, str]:
    if path is None:
        return {}, ""
    import yaml

    if not path.is_file():
        raise CliError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise CliError(f"--config {path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise CliError(f"--config {path}: expected a mapping at the top level")
    return data, str(path)


def _variance_args(items: list[str] | None) -> dict[str, Path] | None:
    if items is None:
        return None
    out = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise CliError(f"--variance {item!r}: expected TASK=STORE.zarr")
        out[task] = Path(path)
    return out


def run_make(args: argparse.Namespace) -> int:
    from lemmse.figures import FIGURES, FigureInputs, Reference, make_figure

    if args.name not in FIGURES:
        raise CliError(f"unknown figure {args.name!r}; choose one of {', '.join(FIGURES)}")
    config, label = _config(args.config)
    inputs = FigureInputs.load(args.tables, args.results, preinverses=config.get("preinverses"),
                               variance_stores=_variance_args(args.variance))
    make_figure(args.name, inputs, args.out, config_label=args.label or label, reference=Reference.from_config(config))
    return 0


def run_claims(args: argparse.Namespace) -> int:
    import pandas as pd

    from lemmse.claims import compute_claims, write_claims
    from lemmse.figures.inputs import read_table

    config, label = _config(args.config)
    extra = {name: pd.read_parquet(args.tables / f"{name}.parquet") for name in ("netpairs", "estimator_pairs",
                                                                                  "memorisation")
             if (args.tables / f"{name}.parquet").is_file()}
    metrics = read_table(args.tables, "metrics")
    table = compute_claims(metrics, read_table(args.tables, "analytic"),
                           variance=_variance_args(args.variance), preinverses=config.get("preinverses"), **extra)
    write_claims(table, args.out_md, args.out_csv, config_label=args.label or label or "unnamed", config=config,
                 metrics=metrics)
    return 0


def run_variance(args: argparse.Namespace) -> int:
    from lemmse.figures.variance import compute_variance

    compute_variance(args.out, args.data, task=args.task, sigma=args.sigma, draws=args.draws, seed=args.seed,
                     patch=args.patch, train_size=args.train_size, n_images=args.images, split=args.split,
                     device=args.device)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from lemmse.figures import FIGURES, coverage
    from lemmse.figures.inputs import read_table

    if args.tables is None:
        for name in FIGURES:
            print(name)
        return 0
    config, _ = _config(args.config)
    why = coverage(read_table(args.tables, "metrics"), read_table(args.tables, "analytic"), variance=args.with_variance,
                   config=config)
    for name, reason in why.items():
        print(f"{name}\t{'covered' if reason is None else 'not covered: ' + reason}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``figures`` (with ``make``, ``claims``, ``variance``, ``list``) on ``subparsers``."""
    p = subparsers.add_parser("figures", help="paper figures, the claims report and the fig4 variance stage",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="figures_command", metavar="ACTION", title="actions", required=True)
    variance_help = ("TASK=STORE.zarr, repeatable: a fig4 variance store per task (default: those found under "
                     "RESULTS/variance/{dataset}/{task}.zarr for figures; none for claims)")

    make = sub.add_parser("make", help="render one figure to a PNG", formatter_class=HelpFormatter,
                          description="Render figure NAME (see `lemmse figures list`) from the tables and stores.")
    make.add_argument("name", metavar="NAME", help="figure name, e.g. fig5_psnr_vs_sigma")
    make.add_argument("--tables", required=True, type=Path, metavar="DIR", help="folder with metrics and analytic tables")
    make.add_argument("--results", required=True, type=Path, metavar="DIR", help="results folder holding the stores")
    make.add_argument("--out", required=True, type=Path, metavar="PNG", help="output PNG (table2 also writes .csv/.md)")
    make.add_argument("--config", type=Path, metavar="CONFIG.yaml",
                      help="workflow config (pre-inverse labels, operators, the figures.reference slice, label)")
    make.add_argument("--label", help="configuration label printed in the title (default: the --config path)")
    make.add_argument("--variance", action="append", metavar="TASK=STORE", help=variance_help)
    add_verbosity_flags(make)
    make.set_defaults(func=run_make)

    claims = sub.add_parser("claims", help="check the paper's claims on the tables", formatter_class=HelpFormatter,
                            description="Write the claims table (claim, where, statistic, value, verdict).")
    claims.add_argument("--tables", required=True, type=Path, metavar="DIR",
                        help="folder with the metrics and analytic tables (and, when present, netpairs, "
                             "estimator_pairs and memorisation .parquet)")
    claims.add_argument("--out-md", required=True, type=Path, metavar="MD", help="Markdown report")
    claims.add_argument("--out-csv", required=True, type=Path, metavar="CSV", help="CSV table")
    claims.add_argument("--config", type=Path, metavar="CONFIG.yaml", help="the configuration, stated in the report")
    claims.add_argument("--label", help="configuration label (default: the --config path)")
    claims.add_argument("--variance", action="append", metavar="TASK=STORE", help=variance_help)
    add_verbosity_flags(claims)
    claims.set_defaults(func=run_claims)

    var = sub.add_parser("variance", help="LE-MMSE over several noise draws (fig4 store)", formatter_class=HelpFormatter,
                         description="Compute the per-pixel variance store of fig4 (B = I and B = A⁺).")
    var.add_argument("--data", required=True, type=Path, metavar="DATA.zarr", help="dataset store")
    var.add_argument("--task", required=True, choices=("inpainting", "deconvolution", "denoising"))
    var.add_argument("--sigma", required=True, type=float, help="noise level σ")
    var.add_argument("--draws", type=positive_int, default=8, help="noise draws K (>= 2; default 8)")
    var.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    var.add_argument("--patch", type=positive_int, default=5, help="patch size P (odd; default 5)")
    var.add_argument("--train-size", type=positive_int, default=None, help="first N training images (default all)")
    var.add_argument("--images", type=positive_int, default=2, help="images of the split (default 2)")
    var.add_argument("--split", choices=("train", "test"), default="test")
    var.add_argument("--device", default="cpu")
    var.add_argument("--out", required=True, type=Path, metavar="STORE.zarr", help="output store (written atomically)")
    add_verbosity_flags(var)
    var.set_defaults(func=run_variance)

    lst = sub.add_parser("list", help="figure names, or which ones the tables cover", formatter_class=HelpFormatter)
    lst.add_argument("--tables", type=Path, metavar="DIR", help="with tables: say which figures they cover")
    lst.add_argument("--with-variance", action="store_true", help="count fig4 as covered (variance stage runs)")
    lst.add_argument("--config", type=Path, metavar="CONFIG.yaml",
                     help="workflow config (pre-inverse labels and the figures.reference slice)")
    add_verbosity_flags(lst)
    lst.set_defaults(func=run_list)
    return p
