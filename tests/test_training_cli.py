"""``lemmse train``: help, dry-run parameter counts, one-line errors, and a real kill -9 + --resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lemmse.cli.main import main
from lemmse.training import CHECKPOINT, STATS, load_checkpoint


def test_help_lists_the_flags(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--train-data", "--arch", "--patch", "--sigma-min", "--resume", "--dry-run", "--preset"):
        assert flag in text


def test_dry_run_prints_the_paper_parameter_counts(capsys):
    assert main(["train", "--dry-run", "--arch", "all", "--patch", "7", "--preset", "paper"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["unet", "resnet", "patchmlp"]
    for line in lines:
        millions = float(line.split("(")[1].split(" M")[0])
        assert 3.5 <= millions <= 5.1, line


@pytest.mark.parametrize("argv,message", [
    (["--patch", "6"], "P=6"), (["--patch", "33"], "P=33 is larger than the 32×32"),
    (["--sigma-min", "0.5", "--sigma-max", "0.2"], "sigma_min=0.5 > sigma_max=0.2"),
    (["--sigma", "-1"], "sigma_min=-1.0"), (["--arch", "vit"], "'vit'"),
    (["--model-option", "depth=3", "--arch", "resnet"], "'depth'"),
    (["--sigma", "0.1", "--sigma-max", "0.2"], "either --sigma"),
])
def test_bad_flags_fail_with_one_line_naming_the_value(argv, message, capsys):
    assert main(["train", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lemmse: error:") and message in err[0], err


def test_missing_data_and_bad_files(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "m")]) == 2
    assert "--train-data is required" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((2, 1, 8, 8), 2.0, dtype=np.float32))
    assert main(["train", "--train-data", str(bad), "--out", str(tmp_path / "m"), "--patch", "3"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


ARGS = ["--arch", "resnet", "--patch", "3", "--model-option", "width=8", "--sigma-min", "0", "--sigma-max", "1",
        "--steps", "1500", "--batch-size", "4", "--checkpoint-every", "50", "--log-every", "10",
        "--ema-start", "100", "--ema-every", "2", "--seed", "3", "--device", "cpu", "--threads", "1", "-q"]


def _cmd(data, out, *extra):
    return [sys.executable, "-m", "lemmse", "train", "--train-data", str(data), "--out", str(out), *ARGS, *extra]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    data = tmp_path / "train.npy"
    np.save(data, np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cmd(data, tmp_path / "full"), check=True, env=env, timeout=240)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cmd(data, cut), env=env)
    deadline = time.monotonic() + 120
    while not (cut / CHECKPOINT).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    was_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert was_running, "the run ended before it could be killed"
    assert 50 <= load_checkpoint(cut)["step"] < 1500
    subprocess.run(_cmd(data, cut, "--resume"), check=True, env=env, timeout=240)

    full, resumed = load_checkpoint(tmp_path / "full"), load_checkpoint(cut)
    assert full["step"] == resumed["step"] == 1500
    for key in ("model", "ema"):
        for name, tensor in full[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name}"
    rows = lambda d: [{k: v for k, v in json.loads(l).items() if k != "seconds"}  # noqa: E731
                      for l in (d / STATS).read_text().splitlines()]
    assert rows(tmp_path / "full") == rows(cut)


def test_trains_from_a_dataset_store(tmp_path):
    import xarray as xr

    from lemmse import store

    rng = np.random.default_rng(0)
    ds = xr.Dataset({"train": (("train_image", "c", "h", "w"), rng.random((6, 1, 8, 8), dtype=np.float32)),
                     "test": (("test_image", "c", "h", "w"), rng.random((2, 1, 8, 8), dtype=np.float32))})
    store.save_dataset(ds, tmp_path / "d.zarr")
    out = tmp_path / "m"
    assert main(["train", "--train-data", str(tmp_path / "d.zarr"), "--train-size", "4", "--out", str(out),
                 "--arch", "patchmlp", "--patch", "3", "--steps", "3", "--batch-size", "2", "--device", "cpu",
                 "-q"]) == 0
    options = json.loads((out / "training_options.json").read_text())
    assert options["train_size"] == 4 and options["arch"] == "patchmlp" and load_checkpoint(out)["step"] == 3
