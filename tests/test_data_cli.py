"""``lemmse data prepare|measure|info`` end to end through ``lemmse.cli.main.main``, on real stores."""
from __future__ import annotations

import pytest
import xarray as xr

from lemmse.cli.data import DATASET_NAMES
from lemmse.cli.main import main
from lemmse.data import DATASETS


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dataset_names_match_the_registry():
    assert DATASET_NAMES == tuple(DATASETS)


@pytest.mark.parametrize("argv", [["data"], ["data", "prepare"], ["data", "measure"], ["data", "info"]])
def test_help(capsys, argv):
    code, out, _ = _run(capsys, *argv, "--help")
    assert code == 0 and "usage: lemmse data" in out


def test_prepare_measure_info(tmp_path, capsys):
    data = tmp_path / "data" / "digits.zarr"
    code, _, err = _run(capsys, "data", "prepare", "digits", "--out", str(data), "--train-size", "100",
                        "--test-size", "20", "-q")
    assert code == 0, err
    assert xr.open_zarr(data).train.shape == (100, 1, 16, 16)

    code, out, _ = _run(capsys, "data", "info", str(data))
    assert code == 0
    assert "train: ('train_image', 'c', 'h', 'w') (100, 1, 16, 16) float32" in out
    assert "split sizes: train 100, test 20" in out
    assert "source: scikit-learn load_digits" in out and "licence:" in out and "sha256:" in out
    assert "complete: yes" in out

    meas = tmp_path / "measurements" / "digits" / "deconvolution.zarr"
    code, _, err = _run(capsys, "data", "measure", "--data", str(data), "--task", "deconvolution",
                        "--sigma", "0.05", "0.2", "--n-eval", "8", "--blur-std", "0.8", "--out", str(meas), "-q")
    assert code == 0, err
    ds = xr.open_zarr(meas)
    assert ds.y.shape == (2, 8, 2, 1, 16, 16) and ds.attrs["blur_std"] == 0.8
    code, out, _ = _run(capsys, "data", "info", str(meas))
    assert code == 0 and "sigma: 0.05, 0.2" in out and "task: deconvolution" in out


def test_config_file_and_ood_none(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_size: 10\ntest_size: 5\nresolution: 12\n")
    out = tmp_path / "faces.zarr"
    code, _, err = _run(capsys, "data", "prepare", "faces", "--out", str(out), "--config", str(cfg),
                        "--train-size", "7", "--ood", "none", "-q")
    assert code == 0, err
    ds = xr.open_zarr(out)
    assert ds.train.shape == (7, 1, 12, 12) and ds.attrs["ood_partner"] is None


@pytest.mark.parametrize("argv, message", [
    (["data", "prepare", "mnist"], "unknown dataset 'mnist'"),
    (["data", "prepare", "digits", "--train-size", "5000"], "train_size=5000"),
    (["data", "prepare", "photos", "--resolution", "64"], "resolution=64"),
    (["data", "prepare", "cifar10", "--root", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["data", "prepare", "digits", "--grayscale"], "grayscale"),
])
def test_prepare_errors_are_one_line(tmp_path, capsys, argv, message):
    code, out, err = _run(capsys, *argv, "--out", str(tmp_path / "o.zarr"))
    assert code == 2 and out == ""
    assert err.startswith("lemmse: error: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_measure_and_info_errors(tmp_path, capsys):
    data = tmp_path / "d.zarr"
    assert main(["data", "prepare", "faces", "--out", str(data), "--train-size", "4", "--test-size", "4", "-q"]) == 0
    capsys.readouterr()
    code, _, err = _run(capsys, "data", "measure", "--data", str(data), "--task", "denoising", "--sigma", "0.1",
                        "-0.5", "--n-eval", "2", "--out", str(tmp_path / "m.zarr"))
    assert code == 2 and "sigma -0.5" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "data", "measure", "--data", str(data), "--task", "denoising", "--sigma", "0.1",
                        "--n-eval", "5", "--out", str(tmp_path / "m.zarr"))
    assert code == 2 and "n_eval=5" in err
    assert not (tmp_path / "m.zarr").exists()
    code, _, err = _run(capsys, "data", "info", str(tmp_path / "missing.zarr"))
    assert code == 2 and "missing.zarr" in err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train_sise: 3\n")
    code, _, err = _run(capsys, "data", "prepare", "faces", "--config", str(cfg), "--out", str(tmp_path / "x.zarr"))
    assert code == 2 and "train_sise" in err
