"""``lemmse bench``: it reports ratios measured in its own run only, never against quoted times."""
from __future__ import annotations

import inspect

from lemmse import bench


def _row(float64_seconds, serial_tiles_seconds=None):
    config = bench.Config("digits", 1500, 5, "denoising", "identity")
    return bench.Row(config, 0.05, 64, 0.05, float64_seconds, serial_tiles_seconds, 60.0, 200.0, 0.4, 0.25, 3e-7)


def test_table_ratios_are_measured_in_the_run():
    row = _row(0.2, 0.065)
    assert row.speedup_vs_float64 == 4.0
    assert row.speedup_vs_serial_tiles == 0.065 / 0.05
    assert row.fraction == 0.3
    table = bench.format_table([row, _row(None)])
    lines = table.splitlines()
    assert len(lines) == 4
    assert "| 0.0500 | 0.2000 | 4.00× | 1.30× | 60.0 | 30.0 % (of 200) | 40.0 % | 25.0 % |" in lines[2]
    assert "| 0.0500 | — | — | — |" in lines[3]  # paths not timed: no ratio at all
    assert "author" not in table.lower()


def test_no_times_quoted_from_another_machine():
    source = inspect.getsource(bench).lower()
    assert "authors_seconds" not in source and "speedup_vs_authors" not in source
