"""``lemmse estimate`` (and ``lemmse bench``) through ``lemmse.cli.main.main``, on real .npy files.

Checks that the command writes what the Python API computes, that its diagnostics file has the
documented keys, shapes and dtypes, that the smoothed estimator is reproducible, that every
input problem ends with exit status 2 and exactly one ``lemmse: error:`` line naming the flag
or value — with nothing written and an existing OUT left untouched — that ``--help`` documents
every flag, and that the benchmark runs and writes a sensible CSV.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lemmse.cli.main import main
from lemmse.estimators import estimate

CROP = slice(4, 12)


@pytest.fixture()
def files(tmp_path: Path, digits16, test_noise) -> dict[str, Path]:
    """``train.npy`` (20 digit crops 8×8, float32) and ``y.npy`` (2 noisy test crops) in tmp_path."""
    crop = digits16[:, :, CROP, CROP].numpy()
    train = np.ascontiguousarray(crop[:20])
    y = (crop[1500:1502].astype(np.float64) + 0.1 * test_noise[:2, :1, CROP, CROP].numpy()).astype(np.float32)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "y.npy", y)
    return {"train": tmp_path / "train.npy", "y": tmp_path / "y.npy", "out": tmp_path / "out.npy",
            "dir": tmp_path}


def base_argv(files, *extra: str, estimator: str = "lemmse") -> list[str]:
    argv = ["estimate", "--train", str(files["train"]), "--y", str(files["y"]), "--task", "denoising",
            "--estimator", estimator, "--sigma", "0.1", "--out", str(files["out"]), "-q"]
    if estimator in ("lemmse", "smoothed") and "--patch" not in extra:
        argv += ["--patch", "3"]
    return argv + list(extra)


def test_output_matches_python_api(files, capsys):
    """OUT has y's shape, the --dtype, and the numbers of lemmse.estimators.estimate."""
    assert main(base_argv(files)) == 0
    out = np.load(files["out"])
    y = np.load(files["y"])
    assert out.shape == y.shape and out.dtype == np.float32
    api = estimate(torch.from_numpy(np.load(files["train"])), torch.from_numpy(y), task="denoising",
                   estimator="lemmse", sigma=0.1, patch=3).xhat.numpy()
    np.testing.assert_array_equal(out, api)
    assert float(np.abs(out - y).max()) > 1e-3  # it did denoise something

    assert main(base_argv(files, "--dtype", "float64", "--preinverse", "identity")) == 0
    out64 = np.load(files["out"])
    assert out64.dtype == np.float64
    assert float(np.abs(out64 - out).max()) <= 1e-4


@pytest.mark.parametrize("task,extra", [
    ("inpainting", ["--hole", "3", "--preinverse", "pinv"]),
    ("deconvolution", ["--preinverse", "tikhonov", "--lam", "0.01", "--blur-std", "1.5"]),
], ids=["inpainting-pinv", "deconvolution-tikhonov"])
def test_physics_aware_output_matches_python_api(files, task, extra):
    """Operator flags (--hole, --blur-std, --preinverse, --lam) reach the API unchanged."""
    argv = base_argv(files, *extra, estimator="emmse")
    argv[argv.index("denoising")] = task
    assert main(argv) == 0
    kwargs = {"inpainting": dict(hole=3, preinverse="pinv"),
              "deconvolution": dict(preinverse="tikhonov", lam=0.01, blur_std=1.5)}[task]
    api = estimate(torch.from_numpy(np.load(files["train"])), torch.from_numpy(np.load(files["y"])),
                   task=task, estimator="emmse", sigma=0.1, **kwargs).xhat.numpy()
    np.testing.assert_array_equal(np.load(files["out"]), api)


def test_diagnostics_file(files):
    """--diagnostics writes an .npz with every documented array (lemmse.estimators.api.DIAGNOSTICS),
    shapes and dtypes, equal to the API's diagnostics."""
    from lemmse.estimators.api import DIAGNOSTIC_MAPS, DIAGNOSTIC_SUMMARIES

    diag_path = files["dir"] / "diag.npz"
    assert main(base_argv(files, "--diagnostics", str(diag_path))) == 0
    n, _, h, w = np.load(files["y"]).shape
    with np.load(diag_path) as diag:
        ints = {"mass99", "source", "source_image"}
        expected = {**{k: ((n, h, w), np.int64 if k in ints else np.float64) for k in DIAGNOSTIC_MAPS},
                    **{k: ((n,), np.float64) for k in DIAGNOSTIC_SUMMARIES}}
        assert sorted(diag.files) == sorted(expected)
        for key, (shape, dtype) in expected.items():
            assert diag[key].shape == shape and diag[key].dtype == dtype, key
        assert bool((diag["mass99"] >= 1).all()) and bool((diag["source"] >= -1).all())
        assert bool((diag["source"] < 20).all()) and bool((diag["source_image"] < 20).all())
        api = estimate(torch.from_numpy(np.load(files["train"])), torch.from_numpy(np.load(files["y"])),
                       task="denoising", estimator="lemmse", sigma=0.1, patch=3, diagnostics=True).diagnostics
        for key in expected:
            np.testing.assert_array_equal(diag[key], api[key].numpy())


def test_smoothed_is_reproducible(files):
    """--estimator smoothed --smoothing 0.1 --samples 2 --seed 3 gives identical files twice,
    and another seed gives a different one."""
    outs = []
    for seed in ("3", "3", "4"):
        argv = base_argv(files, "--smoothing", "0.1", "--samples", "2", "--seed", seed, estimator="smoothed")
        assert main(argv) == 0
        outs.append(np.load(files["out"]))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert float(np.abs(outs[0] - outs[2]).max()) > 1e-4


# --------------------------------------------------------------------------------------------
# errors


class _Unpickled:
    """Creating this object on unpickling makes the directory ``path`` (a visible side effect)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _write(kind: str, d: Path) -> Path:
    """A bad input file of the given kind in ``d``."""
    path = d / f"bad_{kind}.npy"
    if kind == "corrupt":
        path.write_bytes(b"this is not an npy file\n" * 10)
    elif kind == "text":
        path = d / "train.txt"
        path.write_text("0.1 0.2\n0.3 0.4\n")
    elif kind == "pickle":
        np.save(path, np.array([_Unpickled(str(d / "PWNED"))], dtype=object), allow_pickle=True)
    elif kind == "int":
        np.save(path, np.zeros((4, 1, 8, 8), dtype=np.int64))
    elif kind == "3d":
        np.save(path, np.zeros((4, 8, 8), dtype=np.float32))
    elif kind == "range":
        np.save(path, np.full((4, 1, 8, 8), 1.5, dtype=np.float32))
    elif kind == "nan":
        a = np.zeros((2, 1, 8, 8), dtype=np.float32)
        a[1, 0, 2, 5] = np.nan
        np.save(path, a)
    elif kind == "colour":
        np.save(path, np.zeros((2, 3, 8, 8), dtype=np.float32))
    else:
        raise AssertionError(kind)
    return path


def _flag(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


# (id, how to build the argv from (files, base argv), substrings of the error line)
ERRORS = [
    ("missing-train", lambda f, a: _flag(a, "--train", str(f["dir"] / "nope.npy")), ["--train", "nope.npy", "no such file"]),
    ("corrupt-train", lambda f, a: _flag(a, "--train", str(_write("corrupt", f["dir"]))), ["--train", "bad_corrupt.npy"]),
    ("text-train", lambda f, a: _flag(a, "--train", str(_write("text", f["dir"]))), ["--train", "train.txt"]),
    ("pickled-y", lambda f, a: _flag(a, "--y", str(_write("pickle", f["dir"]))), ["--y", "bad_pickle.npy"]),
    ("integer-train", lambda f, a: _flag(a, "--train", str(_write("int", f["dir"]))), ["--train", "int64"]),
    ("3d-train", lambda f, a: _flag(a, "--train", str(_write("3d", f["dir"]))), ["--train", "(4, 8, 8)"]),
    ("train-outside-0-1", lambda f, a: _flag(a, "--train", str(_write("range", f["dir"]))), ["--train", "[0, 1]", "1.5"]),
    ("nan-in-y", lambda f, a: _flag(a, "--y", str(_write("nan", f["dir"]))), ["--y", "NaN", "(1, 0, 2, 5)"]),
    ("channel-mismatch", lambda f, a: _flag(a, "--y", str(_write("colour", f["dir"]))), ["--y", "(3, 8, 8)"]),
    ("even-patch", lambda f, a: _flag(a, "--patch", "4"), ["patch=4"]),
    ("patch-larger-than-image", lambda f, a: _flag(a, "--patch", "9"), ["patch=9"]),
    ("patch-with-mmse", lambda f, a: base_argv(f, "--patch", "3", estimator="mmse"), ["--patch"]),
    ("diagnostics-with-emmse", lambda f, a: base_argv(f, "--diagnostics", str(f["dir"] / "d.npz"), estimator="emmse"),
     ["--diagnostics", "emmse"]),
    ("smoothing-with-lemmse", lambda f, a: a + ["--smoothing", "0.1"], ["--smoothing"]),
    ("tikhonov-without-lam", lambda f, a: _flag(a, "--task", "deconvolution") + ["--preinverse", "tikhonov"],
     ["lam"]),
    ("hole-with-denoising", lambda f, a: a + ["--hole", "3"], ["hole=3"]),
    ("sigma-zero", lambda f, a: _flag(a, "--sigma", "0"), ["sigma=0.0"]),
    ("sigma-negative", lambda f, a: _flag(a, "--sigma", "-0.1"), ["sigma=-0.1"]),
    ("sigma-nan", lambda f, a: _flag(a, "--sigma", "nan"), ["sigma=nan"]),
    ("unknown-task", lambda f, a: _flag(a, "--task", "denoise"), ["--task", "denoise"]),
    ("out-directory-missing", lambda f, a: _flag(a, "--out", str(f["dir"] / "missing" / "o.npy")),
     ["--out", "does not exist"]),
    ("out-equals-train", lambda f, a: _flag(a, "--out", str(f["train"])), ["--out", "--train"]),
]


@pytest.mark.parametrize("make,expected", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
@pytest.mark.parametrize("out_exists", [False, True], ids=["no-out", "existing-out"])
def test_error_exit_2_one_line_nothing_written(files, capsys, make, expected, out_exists):
    """Exit status 2, exactly one stderr line ``lemmse: error: ...`` naming the flag/value, no
    new file anywhere in the folder, and an existing OUT (or input named as OUT) byte-identical."""
    argv = make(files, base_argv(files))
    out = Path(argv[argv.index("--out") + 1])
    if out_exists:
        if not out.parent.is_dir():
            pytest.skip("OUT's directory does not exist in this case")
        if not out.exists():
            out.write_bytes(b"previous contents")
    capsys.readouterr()
    before = {p: p.read_bytes() for p in files["dir"].rglob("*") if p.is_file()}
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lemmse: error: ")
    for piece in expected:
        assert piece in lines[0], f"{piece!r} not in {lines[0]!r}"
    assert captured.out == ""
    after = {p: p.read_bytes() for p in files["dir"].rglob("*") if p.is_file()}
    assert after == before, "the failed command created, removed or changed a file"
    assert not (files["dir"] / "PWNED").exists(), "the pickled array was unpickled"


def test_pickle_payload_is_live(tmp_path):
    """Makes the pickled-y case meaningful: loading that file *with* unpickling does run the
    payload (creates PWNED), so its absence after the CLI run proves nothing was unpickled."""
    path = _write("pickle", tmp_path)
    assert not (tmp_path / "PWNED").exists()
    np.load(path, allow_pickle=True)
    assert (tmp_path / "PWNED").is_dir()


# --------------------------------------------------------------------------------------------
# help and bench


ESTIMATE_FLAGS = ["--train", "--y", "--task", "--hole", "--blur-std", "--preinverse", "--lam", "--estimator",
                  "--patch", "--smoothing", "--samples", "--seed", "--sigma", "--out", "--diagnostics",
                  "--device", "--dtype"]


@pytest.mark.parametrize("args", [[], ["estimate"], ["bench"]], ids=["lemmse", "estimate", "bench"])
def test_help_in_subprocess(args):
    """``python -m lemmse [CMD] --help`` exits 0; estimate's help documents every flag."""
    proc = subprocess.run([sys.executable, "-m", "lemmse", *args, "--help"], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
    if args == ["estimate"]:
        for flag in ESTIMATE_FLAGS:
            assert f"{flag} " in proc.stdout, f"{flag} not documented"
    if args == ["bench"]:
        for flag in ("--quick", "--images", "--check-images", "--repeats", "--csv", "--no-float64-path"):
            assert flag in proc.stdout
    if not args:
        for command in ("estimate", "bench"):
            assert command in proc.stdout


@pytest.mark.parametrize("train_size", [pytest.param(1500, marks=pytest.mark.slow), 200])
def test_bench_quick_writes_csv(train_size, bench_data_dir, tmp_path, capsys, monkeypatch):
    """A real quick benchmark run: one CSV row per configuration (the four headline paths),
    positive timings and rates, float32 within 1e-4 of float64. Timings are never asserted, so the
    reference matrix multiply is a real one of 256² instead of 2048² (a third of the test's time).
    The slow tier runs the headline problem itself (D = 1500, 22 s); the fast tier the same four
    paths trained on the first 200 images (every column and code path, a ninth of the keys)."""
    import dataclasses
    import functools

    import pandas as pd

    from lemmse import bench

    monkeypatch.setattr(bench, "matmul_rate", functools.partial(bench.matmul_rate, size=256))
    headline = bench.problem_configs(quick=True)
    assert {config.train_size for config in headline} == {1500}
    if train_size != 1500:
        smaller = [dataclasses.replace(config, train_size=train_size) for config in headline]
        monkeypatch.setattr(bench, "problem_configs", lambda quick: smaller if quick else pytest.fail("not quick"))
    csv = tmp_path / "b.csv"
    threads = torch.get_num_threads()
    try:  # two threads: the tiles run concurrently and in turn, both timed
        status = main(["bench", "--quick", "--images", "2", "--check-images", "1", "--repeats", "1", "-q",
                       "--threads", "2", "--data", str(bench_data_dir), "--csv", str(csv)])
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    frame = pd.read_csv(csv)
    assert len(frame) == 4
    keys = list(zip(frame["task"], frame["preinverse"]))
    assert sorted(keys) == sorted([("denoising", "identity"), ("inpainting", "identity"),
                                   ("inpainting", "pinv"), ("deconvolution", "identity")])
    assert (frame["dataset"] == "digits").all() and (frame["train_size"] == train_size).all()
    assert (frame["patch"] == 5).all() and (frame["images"] == 2).all()
    for column in ("seconds_per_image", "float64_path_seconds_per_image", "speedup_vs_float64_path", "gflops",
                   "matmul_gflops", "rescored_fraction", "serial_tiles_seconds_per_image", "speedup_vs_serial_tiles"):
        assert (frame[column] > 0).all(), column
    assert (frame["rescored_fraction"] <= 1).all()
    assert not any("author" in column for column in frame.columns)
    assert (frame["fraction_of_matmul"] > 0).all()
    assert (frame["max_abs_error_vs_float64"] <= 1e-4).all()
    assert frame.notna().all().all()
    printed = capsys.readouterr().out
    assert printed.count(f"digits D={train_size} P=5") == 4
