"""Benchmark of the LE-MMSE fast paths: the same as ``lemmse bench`` (``--help`` for the flags).

Prints, per configuration of the benchmark problem and σ, seconds per image of the default path
and of lemmse's own float64 path (and their ratio), the GFLOP/s of the distance work, that as a
fraction of this machine's float32 matrix-multiply rate measured in the same run, the fraction of
scores recomputed in float64 and the error against float64.
"""
from __future__ import annotations

import sys

from lemmse.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
