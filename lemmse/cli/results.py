"""``lemmse results load PATH``: a gathered table (Parquet, CSV or a study's cube) as a table.

In Python the same is one line: ``lemmse.gather.load_metrics(path)`` (or ``pd.read_parquet``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lemmse.cli.common import CliError, HelpFormatter, add_verbosity_flags

DESCRIPTION = """\
Load a results table of the workflow and print it (or a filtered part of it).

PATH is results/tables/metrics.parquet, analytic.parquet, their .csv twins, a study table
results/tables/studies/<name>.parquet, or a study's labelled cube
results/tables/studies/<name>.zarr (flattened to one row per configured cell). In Python:

    from lemmse.gather import load_metrics
    df = load_metrics("results/tables/metrics.parquet")      # a pandas DataFrame
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("results", help="load and print a gathered results table",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="results_command", metavar="COMMAND", required=True)
    load = sub.add_parser("load", help="print a table (.parquet, .csv or a study's .zarr cube)", description=DESCRIPTION,
                          formatter_class=HelpFormatter)
    load.add_argument("path", type=Path, metavar="PATH", help="the table or cube to load")
    load.add_argument("--query", default=None, metavar="EXPR",
                      help="pandas query to filter rows, e.g. \"task == 'denoising' and split == 'test'\"")
    load.add_argument("--columns", nargs="+", default=None, metavar="NAME", help="only these columns")
    load.add_argument("--csv", type=Path, default=None, metavar="OUT.csv",
                      help="write the (filtered) table as CSV instead of printing it")
    add_verbosity_flags(load)
    load.set_defaults(func=run_load)
    return p


def run_load(args: argparse.Namespace) -> int:
    import pandas as pd

    from lemmse.gather import load_metrics

    if not args.path.exists():
        raise CliError(f"{args.path}: no such table")
    if args.path.suffix not in (".parquet", ".csv", ".zarr"):
        raise CliError(f"{args.path}: expected a .parquet, .csv or .zarr table")
    frame = load_metrics(args.path)
    if args.query:
        try:
            frame = frame.query(args.query)
        except Exception as err:  # pandas raises many kinds for a bad expression
            raise CliError(f"--query {args.query!r}: {err}") from err
    if args.columns:
        missing = [c for c in args.columns if c not in frame.columns]
        if missing:
            raise CliError(f"--columns: unknown column(s) {', '.join(missing)}; the table has {', '.join(frame.columns)}")
        frame = frame[args.columns]
    if args.csv is not None:
        frame.to_csv(args.csv, index=False)
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        sys.stdout.write(frame.to_string(max_rows=60) + f"\n[{len(frame)} rows × {frame.shape[1]} columns]\n")
    return 0
