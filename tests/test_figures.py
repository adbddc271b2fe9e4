"""Every figure renders from fixture tables and stores to a sensible PNG, without warnings; figures
the tables do not cover fail with a clear LemmseInputError; covered_figures says which are covered."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from figure_fixtures import DATASET, build_stores, metrics_table, analytic_table
from lemmse.errors import LemmseInputError
from lemmse.figures import FIGURES, FigureInputs, StoreLayout, covered_figures, make_figure, write_captions
from lemmse.figures.variance import compute_variance

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> FigureInputs:
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    build_stores(root, rng)
    for task in ("inpainting", "deconvolution"):
        compute_variance(root / "variance" / DATASET / f"{task}.zarr", root / "data" / f"{DATASET}.zarr",
                         task=task, sigma=0.1, draws=3, patch=3, train_size=10, n_images=1)
    return FigureInputs(metrics_table(rng), analytic_table(rng), StoreLayout(root))


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_renders(world, tmp_path, name):
    out = tmp_path / f"{name}.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_figure(name, world, out, config_label="fixture config")
    width, height = png_size(out)
    assert width >= 400 and height >= 300, (width, height)
    assert out.stat().st_size > 10_000
    if name == "table2_architectures":
        assert out.with_suffix(".csv").is_file() and "| UNet |" in out.with_suffix(".md").read_text()


def test_variance_store_layout(world):
    import xarray as xr

    ds = xr.open_zarr(world.stores.variance(DATASET, "inpainting"))
    assert ds["variance"].dims == ("preinverse", "image", "h", "w")
    assert list(ds["preinverse"].values) == ["identity", "pinv"]
    assert ds["mean"].dims == ("preinverse", "image", "c", "h", "w")
    assert (ds["variance"].values >= 0).all() and ds.attrs["draws"] == 3
    # A⁺ removes the noise inside the hole: lower variance there than with B = I
    assert float(ds["variance"].sel(preinverse="pinv").mean()) < float(ds["variance"].sel(preinverse="identity").mean())


def test_covered_figures_follow_the_tables(world):
    m, a = world.metrics, world.analytic
    assert set(covered_figures(m, a, variance=True)) == set(FIGURES)
    in_dist = m[(m.eval_dataset == m.dataset) & (m.estimator == "lemmse") & (m.patch == 3) & (m.train_size == 10)]
    got = covered_figures(in_dist, a[a.estimator == "lemmse"])
    for name in ("fig7_ood", "fig8_smoothed", "fig26_dataset_size", "fig18_19_patch_size", "fig2_memorisation",
                 "fig4_preinverse_variance"):
        assert name not in got
    assert {"fig5_psnr_vs_sigma", "fig17_patch_density", "fig23_patchwork"} <= set(got)
    # values do not matter: planned keys with NaN values give the same answer
    planned = m.copy()
    planned.loc[:, "psnr_net_est":] = np.nan
    assert covered_figures(planned, a) == covered_figures(m, a)


def test_uncovered_figure_names_what_is_missing(world, tmp_path):
    m = world.metrics
    inputs = FigureInputs(m[m.eval_dataset == m.dataset], world.analytic, world.stores)
    with pytest.raises(LemmseInputError, match="out-of-distribution"):
        make_figure("fig7_ood", inputs, tmp_path / "x.png")
    inputs = FigureInputs(m, world.analytic, world.stores, variance_stores={})
    with pytest.raises(LemmseInputError, match="variance"):
        make_figure("fig4_preinverse_variance", inputs, tmp_path / "x.png")
    with pytest.raises(LemmseInputError, match="unknown figure"):
        make_figure("fig99", inputs, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_caption_files_match_registry(tmp_path):
    paths = write_captions(tmp_path)
    assert len(paths) == len(FIGURES)
    repo = Path(__file__).resolve().parents[1] / "workflow" / "report"
    for name, (_, caption) in FIGURES.items():
        assert (repo / f"{name}.rst").read_text().strip() == caption.strip(), f"regenerate workflow/report/{name}.rst"


def test_cli_make_claims_and_list(world, tmp_path, capsys):
    from lemmse.cli.main import main

    tables = tmp_path / "tables"
    tables.mkdir()
    world.metrics.to_parquet(tables / "metrics.parquet")
    world.analytic.to_csv(tables / "analytic.csv", index=False)
    config = tmp_path / "config.yaml"
    config.write_text("preinverses:\n  identity: {kind: identity}\n  pinv: {kind: pinv}\n")
    out = tmp_path / "fig5.png"
    assert main(["figures", "make", "fig5_psnr_vs_sigma", "--tables", str(tables), "--results",
                 str(world.stores.results), "--out", str(out), "--config", str(config)]) == 0
    assert png_size(out)[0] >= 400
    assert main(["figures", "claims", "--tables", str(tables), "--out-md", str(tmp_path / "c.md"), "--out-csv",
                 str(tmp_path / "c.csv"), "--config", str(config)]) == 0
    assert str(config) in (tmp_path / "c.md").read_text()
    assert main(["figures", "list", "--tables", str(tables)]) == 0
    assert "fig7_ood\tcovered" in capsys.readouterr().out
    assert main(["figures", "make", "nope", "--tables", str(tables), "--results", ".", "--out", "x.png"]) == 2
    assert "unknown figure" in capsys.readouterr().err
