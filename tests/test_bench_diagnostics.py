"""``lemmse bench --diagnostics``: the cost of the LE-MMSE diagnostics as ratios to the estimate alone.

A real quick run (one image, one repeat): one row per σ of the diagnostics problem, positive
times, the ratios printed and written. Timings are never asserted.
"""
from __future__ import annotations

from lemmse.bench import DIAGNOSTIC_SIGMAS, DIAGNOSTIC_TRAIN
from lemmse.cli.main import main


def test_bench_diagnostics_writes_ratios(bench_data_dir, tmp_path, capsys):
    import pandas as pd

    csv = tmp_path / "d.csv"
    status = main(["bench", "--diagnostics", "--quick", "--images", "1", "--repeats", "1", "-q",
                   "--data", str(bench_data_dir), "--csv", str(csv)])
    assert status == 0
    frame = pd.read_csv(csv)
    assert sorted(frame["sigma"]) == sorted(DIAGNOSTIC_SIGMAS)
    assert (frame["task"] == "denoising").all() and (frame["train_size"] == DIAGNOSTIC_TRAIN).all()
    for column in ("estimate_seconds", "densities_sources_seconds", "all_diagnostics_seconds",
                   "densities_sources_ratio", "all_diagnostics_ratio"):
        assert (frame[column] > 0).all(), column
    ratio = frame["all_diagnostics_seconds"] / frame["estimate_seconds"]
    assert (abs(ratio - frame["all_diagnostics_ratio"]) < 1e-12).all()
    printed = capsys.readouterr().out
    assert printed.count(f"digits D={DIAGNOSTIC_TRAIN} P=5 denoising") == len(DIAGNOSTIC_SIGMAS)
    assert "× estimate" in printed
