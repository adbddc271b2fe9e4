#!/usr/bin/env bash
# Create .venv in the repository root (if absent) and install lemmse with its test extras.
# Idempotent: rerunning only checks that everything is installed.
# torch is pinned and installed first so pip takes the CPU wheel instead of a multi-GB CUDA build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[test]'
# Compile the 99 %-mass numba kernels into their on-disk cache now (a few seconds), so that the
# first estimator shard job of the workflow loads them instead of compiling them.
.venv/bin/python -c "from lemmse.estimators.binning import compile_kernels; compile_kernels()"
