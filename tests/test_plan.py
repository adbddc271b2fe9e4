"""``lemmse plan``: the jobs per rule equal snakemake's own dry run, per-study counts, figures
covered and not covered (with the reason), and the dataset rule's file check in a real run.
"""
from __future__ import annotations

import pytest
import yaml

from lemmse.cli.main import main
from lemmse.plan.config import load_config
from lemmse.plan.sweep import figure_coverage, make_plan, prepared_datasets, rule_jobs, study_jobs
from workflow_helpers import REPO, TINY, job_counts, make_workdir, snakemake


@pytest.fixture(scope="module")
def tiny_plan():
    return make_plan(load_config(TINY))


def _without_patch_study(tmp_path):
    """test_tiny without its patch-size study: figures 17 and 18-19 lose their P axis."""
    config = yaml.safe_load(TINY.read_text())
    del config["studies"]["patch_size"]
    path = tmp_path / "no_patch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_study_and_rule_counts_by_hand(tiny_plan):
    """test_tiny counted by hand: noise 2 archs × 2 problems, etc. (see config/test_tiny.yaml)."""
    studies = study_jobs(tiny_plan)
    assert studies["noise"] == {"train_network": 4, "evaluate_network": 4, "analytic stores": 2, "analytic shards": 4}
    assert studies["ood"]["evaluate_network"] == 1 and studies["smoothing"]["analytic stores"] == 2
    # the smoothing study's σ-conditioned ResNet and one trained at σ = 0.5, against one LE-MMSE store
    assert studies["training_noise"] == {"train_network": 2, "evaluate_network": 2, "analytic stores": 1,
                                         "analytic shards": 2}
    assert len(tiny_plan.networks) == 7  # noise 4, patch size +1, dataset size +1, the fixed-σ ResNet +1
    # memorisation: 2 problems × (mmse, emmse, lemmse) + 3 E-MMSE-only problems (Fig. 3), stores of 2 shards
    # (2 images / 2 per shard × 2 σ / 1)
    assert studies["memorisation"] == {"train_network": 0, "evaluate_network": 0, "analytic stores": 9,
                                       "analytic shards": 18}
    assert studies["variance"]["variance"] == 2
    jobs = rule_jobs(tiny_plan, ["fig5_psnr_vs_sigma"])
    assert jobs["prepare_dataset"] == 2 and prepared_datasets(tiny_plan) == ["digits", "faces"]
    # two shards per store, three per job (the last job holds the remainder)
    assert jobs["analytic_template"] == jobs["analytic_finalize"] == len(tiny_plan.analytics)
    assert jobs["analytic_shard"] == -(-2 * len(tiny_plan.analytics) // 3)
    assert jobs["fig5_psnr_vs_sigma"] == 1 and "fig2_memorisation" not in jobs


@pytest.mark.parametrize("per_job", [1, 2, 3, 7, 10_000])
def test_shard_jobs_cover_every_shard_once_in_plan_order(per_job):
    from types import SimpleNamespace

    from lemmse.errors import LemmseInputError
    from lemmse.plan.records import Shard

    config = load_config(TINY)
    config["analytic"]["shards_per_job"] = per_job
    plan = make_plan(config)
    shards = [Shard(run, i, s) for run in plan.analytics for i, s in plan.shards(run)]
    jobs = plan.shard_jobs
    assert [sh for job in jobs for sh in job] == shards  # each once, in plan order
    assert all(len(job) == per_job for job in jobs[:-1]) and 1 <= len(jobs[-1]) <= per_job
    for run in plan.analytics:  # a store waits for exactly the jobs that write into it
        assert plan.shard_jobs_of(run) == [job for job in jobs if any(sh.run == run for sh in job)]
    wildcards = lambda sh: SimpleNamespace(**{k: str(v) for k, v in sh.wildcards.items()})
    for job in jobs:
        assert plan.shard_job(wildcards(job[0])) == job
    if per_job > 1:  # a shard inside a job names no job
        inner = next(job[1] for job in jobs if len(job) > 1)
        with pytest.raises(LemmseInputError, match=f"no shard job starts at image {inner.image}, "
                                                   f"σ index {inner.sigma_index}.*shards_per_job = {per_job}"):
            plan.shard_job(wildcards(inner))


def test_shards_per_job_below_one_is_refused_naming_the_key():
    from lemmse.errors import LemmseInputError

    config = yaml.safe_load(TINY.read_text())
    config["analytic"]["shards_per_job"] = 0
    with pytest.raises(LemmseInputError, match="shards_per_job"):
        load_config(config)


@pytest.mark.workflow
@pytest.mark.slow
def test_rule_jobs_equal_the_snakemake_dry_run(tmp_path, tiny_plan):
    workdir = make_workdir(tmp_path / "work")
    proc = snakemake(workdir, "-n", "all")
    assert proc.returncode == 0, proc.stdout[-3000:]
    figures = [name for name, why in figure_coverage(tiny_plan).items() if why is None]
    assert job_counts(proc.stdout) == rule_jobs(tiny_plan, figures)


@pytest.mark.workflow
@pytest.mark.slow
def test_rule_jobs_equal_the_paper_dry_run_with_no_data(tmp_path):
    workdir = make_workdir(tmp_path / "work")
    proc = snakemake(workdir, "-n", "all", configfile=REPO / "config" / "paper.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    plan = make_plan(load_config(REPO / "config" / "paper.yaml"))
    figures = [name for name, why in figure_coverage(plan).items() if why is None]
    assert job_counts(proc.stdout) == rule_jobs(plan, figures)


def test_plan_cli_prints_rules_studies_and_figures(capsys, tiny_plan):
    assert main(["plan", str(TINY)]) == 0
    out = capsys.readouterr().out
    jobs = rule_jobs(tiny_plan, [n for n, why in figure_coverage(tiny_plan).items() if why is None])
    assert f": {sum(jobs.values())} jobs" in out
    for rule, n in jobs.items():
        assert any(line.split() == [rule, str(n)] for line in out.splitlines()), rule
    # every figure but Fig. 9 and 24 (the tiny config has no data set outside the reference slice)
    assert "Figures covered (16 of 18)" in out and "Figures NOT covered (2)" in out
    assert "fig24_patchwork: fig24_patchwork: no training data set besides the reference 'digits'" in out
    noise = next(line for line in out.splitlines() if line.split()[:1] == ["noise"])
    assert noise.split()[1:] == ["4", "4", "2", "4", "0"]


def test_plan_cli_names_the_figures_not_covered_and_why(capsys, tmp_path):
    assert main(["plan", str(_without_patch_study(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "Figures NOT covered (4), and why:" in out  # and Fig. 9 and 24, as in the tiny config
    for name in ("fig17_patch_density", "fig18_19_patch_size"):
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{name}:"))
        assert "patch" in line.split(":", 1)[1], line
    assert "Figures covered (14 of 18)" in out


def test_plan_cli_help_and_bad_input(capsys, tmp_path):
    assert main(["plan", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--cost", "--rates", "--device-profile", "--compare", "snakemake -n"):
        assert flag in out, flag
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
    assert main(["plan", str(TINY), "--compare", str(tmp_path)]) == 2
    assert "--compare needs --cost" in capsys.readouterr().err


@pytest.mark.slow
def test_plan_cli_plans_the_paper_config_without_its_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    assert main(["plan", str(REPO / "config" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    assert ": 1567 jobs" in out and any(line.split() == ["train_network", "87"] for line in out.splitlines())


@pytest.mark.workflow
@pytest.mark.slow
def test_missing_dataset_root_fails_in_the_dataset_rule_naming_key_and_path(tmp_path):
    """The dry run plans; the real run stops in prepare_dataset, before any other job, with the
    config key and the path in the job's log."""
    config = yaml.safe_load(TINY.read_text())
    config["datasets"]["fashion_mnist"] = {"root": "/nonexistent/fmnist"}  # configured, not on disk
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    workdir = make_workdir(tmp_path / "work")
    assert snakemake(workdir, "-n", "all", configfile=bad).returncode == 0
    proc = snakemake(workdir, "--cores", "1", "results/test_tiny/data/fashion_mnist.zarr", configfile=bad)
    assert proc.returncode != 0
    log = (workdir / "results/test_tiny/logs/prepare_dataset/fashion_mnist.log").read_text()
    assert "config key datasets.fashion_mnist.root: /nonexistent/fmnist does not exist" in log, log[-2000:]
    assert not (workdir / "results/test_tiny/data/fashion_mnist.zarr").exists()
