"""The results layout (lemmse.plan.layout) is the one source of the rule files' patterns and of
every record's concrete paths: for every record of the shipped configs, the pattern formatted
with the record's wildcards is the record's path, and Snakemake's matching (with the Snakefile's
wildcard constraints) reads the same wildcards back from that path."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lemmse.plan.layout import PATHS, Layout, match, wildcard_constraints, wildcard_names
from lemmse.plan.config import load_config
from lemmse.plan.sweep import make_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["config.yaml", "paper.yaml"])
def plan(request):
    return make_plan(load_config(ROOT / "config" / request.param))


def _records(plan):
    """(path name, record, extra wildcards, the record's own concrete path) for every record."""
    r = plan.results
    for n in plan.networks:
        yield "network_dir", n, {}, n.directory(r)
        yield "trained", n, {}, n.directory(r) / "trained.json"
    for e in plan.evaluations:
        yield "evaluation", e, {}, e.store(r)
    for a in plan.analytics:
        yield "analytic_store", a, {}, a.store(r)
        yield "analytic_complete", a, {}, a.complete_marker(r)
        yield "analytic_template", a, {}, a.stem(r).with_suffix(".template")
        for i, s in plan.shards(a):
            yield "analytic_shard", a, {"image": i, "sigma_index": s}, a.shard_marker(r, i, s)
    for ds in plan.datasets:
        yield "data", None, {"dataset": ds}, plan.data_store(ds)
    for ds, task in plan.measurement_stores:
        yield "measurements", None, {"dataset": ds, "task": task}, plan.measurement_store(ds, task)
    for study in plan.config["studies"]:
        yield "study_table", None, {"study": study}, plan.results / "tables" / "studies" / f"{study}.parquet"


def test_every_pattern_round_trips_through_every_record(plan):
    layout, constraints = plan.layout, wildcard_constraints(plan)
    seen = set()
    for name, record, extra, concrete in _records(plan):
        wildcards = {**(record.wildcards if record is not None else {}), **extra}
        pattern = layout.pattern(name)
        assert pattern.format(**wildcards) == str(concrete) == str(layout.path(name, record, **extra)), name
        back = match(pattern, concrete, constraints)
        assert back == {k: str(wildcards[k]) for k in wildcard_names(pattern)}, (name, concrete)
        seen.add(name)
    assert {"trained", "evaluation", "analytic_store", "analytic_shard", "data", "measurements"} <= seen


def test_paths_of_different_jobs_differ(plan):
    paths = [str(c) for _, _, _, c in _records(plan)]
    assert len(paths) == len(set(paths))


def test_logs_and_benchmarks_hang_off_the_job_keys():
    layout = Layout("out")
    assert layout.log("gather") == "out/logs/gather.log"
    assert layout.benchmark("train_network", "{dataset}") == "out/benchmarks/train_network/{dataset}.tsv"
    with pytest.raises(KeyError, match="needs the wildcards"):
        layout.path("measurements", dataset="digits")


def test_rule_files_spell_no_path_themselves():
    """Every results path of a rule file comes from the layout (L.pattern, L.path, L.log, ...)."""
    for path in [ROOT / "workflow" / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for top in {p.split("/")[0] for p in PATHS.values()} - {"claims.md", "claims.csv"}:
            assert not re.search(rf'["/{{]{re.escape(top)}/', text), (path.name, top)
        assert "{R}" not in text and "results/" not in text, path.name
