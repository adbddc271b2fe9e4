"""``lemmse plan CONFIG [--cost]``: what a workflow config will run, and what it will cost, before it runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lemmse.cli.common import CliError, HelpFormatter, add_verbosity_flags

DESCRIPTION = """\
Print what `snakemake all --configfile CONFIG` will run, without running anything and without
any data set on disk: the jobs per rule (the same counts as `snakemake -n`), the jobs per study,
and the paper figures the config covers — and those it does not, with the reason.

With --cost, also print for every rule its FLOPs (estimator scores 2·Q·K·F and exponentials Q·K,
network training and evaluation FLOPs) and the predicted wall time, core-hours and GPU-hours
(the rules train_network, evaluate_network and analytic_shard run on a GPU under the SLURM
profile). The rates come from a file measured on your machine,

    lemmse bench --rates-out rates.json --rates-config CONFIG      # minutes; CPU or --device cuda
    lemmse plan CONFIG --cost --rates rates.json

or from a published-peak profile (--device-profile a100 or h100: ESTIMATES, with assumed
efficiencies). The model is documented in lemmse/cost.py. After a run, --compare
results/benchmarks sets the wall time each rule measured (Snakemake benchmark files) beside
the prediction.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plan", help="jobs, figures and predicted cost of a workflow config",
                              description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("config", type=Path, metavar="CONFIG", help="a workflow config (e.g. config/paper.yaml)")
    p.add_argument("--cost", action="store_true", help="also print FLOPs and predicted hours per rule")
    p.add_argument("--rates", type=Path, default=None, metavar="FILE",
                   help="measured rates (lemmse bench --rates-out FILE). A CPU file costs every rule on that "
                        "machine unless --device-profile sends the GPU rules elsewhere.")
    p.add_argument("--device-profile", choices=("a100", "h100"), default=None,
                   help="cost the GPU rules on this GPU's published peak rates (an ESTIMATE). Default without "
                        "--rates: h100, with a nominal CPU node for the CPU rules.")
    p.add_argument("--compare", type=Path, default=None, metavar="DIR",
                   help="with --cost: the benchmark folder of a finished run (results/benchmarks); prints the "
                        "measured seconds per rule and measured/predicted beside the prediction")
    add_verbosity_flags(p)
    p.set_defaults(func=run)
    return p


def _rates(args: argparse.Namespace):
    from lemmse.cost import NOMINAL_CPU, PROFILES, load_rates

    measured = load_rates(args.rates) if args.rates is not None else None
    if args.device_profile is not None:
        gpu = PROFILES[args.device_profile]
        cpu = measured if measured is not None and measured.kind == "cpu" else NOMINAL_CPU
        return cpu, gpu
    if measured is None:
        return NOMINAL_CPU, PROFILES["h100"]
    return (measured, None) if measured.kind == "cpu" else (NOMINAL_CPU, measured)


def _flops(x: float) -> str:
    return f"{x:.2e}" if x else "-"


def _hours(x: float) -> str:
    return f"{x:.3g}" if x else "-"


def format_plan(path: Path, plan, coverage: dict, jobs: dict, studies: dict) -> str:
    lines = [f"Plan of {path} (results in {plan.results}): {sum(jobs.values())} jobs", "", "Jobs per rule:"]
    width = max(len(r) for r in jobs)
    lines += [f"  {rule:<{width}}  {n:>7}" for rule, n in jobs.items()]
    lines += [f"  {'total':<{width}}  {sum(jobs.values()):>7}", "",
              "Jobs per study (a job several studies share counts in each):"]
    columns = ["train_network", "evaluate_network", "analytic stores", "analytic shards", "variance"]
    lines.append("  " + f"{'study':<14}" + "".join(f"{c:>18}" for c in columns))
    for name, row in studies.items():
        lines.append("  " + f"{name:<14}" + "".join(f"{row.get(c, 0):>18}" for c in columns))
    covered = [name for name, why in coverage.items() if why is None]
    lines += ["", f"Figures covered ({len(covered)} of {len(coverage)}): {', '.join(covered) or 'none'}"]
    missing = {name: why for name, why in coverage.items() if why is not None}
    if missing:
        lines.append(f"Figures NOT covered ({len(missing)}), and why:")
        lines += [f"  {name}: {why}" for name, why in missing.items()]
    return "\n".join(lines)


def format_cost(costs: dict, cpu, gpu, measured: dict | None) -> str:
    from lemmse.cost import totals

    lines = ["", "Predicted cost (before anything runs; model: lemmse/cost.py)",
             f"  CPU rules on: {cpu.label}" + ("" if gpu is not None else " (the GPU rules too)")]
    if gpu is not None:
        lines.append(f"  GPU rules on: {gpu.label}")
    if cpu.clock == "cpu":
        lines.append("  seconds are CPU seconds of all threads (rates measured with --rates-clock cpu); "
                     "measured: the benchmark files' cpu_time")
    head = (f"  {'rule':<26}{'jobs':>6} {'on':>4} {'score FLOPs':>12} {'exps':>10} {'model FLOPs':>12} "
            f"{'wall h' if cpu.clock == 'wall' else 'CPU h':>9} {'core-h':>9} {'GPU-h':>9}")
    if measured is not None:
        head += f" {'measured h':>11} {'meas/pred':>9}"
    lines.append(head)
    for rule, c in costs.items():
        line = (f"  {rule:<26}{c.jobs:>6} {c.device:>4} {_flops(c.score_flops):>12} {_flops(c.exps):>10} "
                f"{_flops(c.model_flops):>12} {c.seconds / 3600:>9.3g} {_hours(c.core_hours):>9} "
                f"{_hours(c.gpu_hours):>9}")
        if measured is not None:
            if rule in measured:
                jobs, seconds = measured[rule]
                line += f" {seconds / 3600:>11.3g} {seconds / c.seconds:>9.2f}"
                if jobs != c.jobs:
                    line += f"  ({jobs} benchmark files)"
            else:
                line += f" {'-':>11} {'-':>9}"
        lines.append(line)
    t = totals(costs)
    lines.append(f"  {'total':<26}{t['jobs']:>6} {'':>4} {_flops(sum(c.score_flops for c in costs.values())):>12} "
                 f"{_flops(t['exps']):>10} {_flops(sum(c.model_flops for c in costs.values())):>12} "
                 f"{sum(c.seconds for c in costs.values()) / 3600:>9.3g} {t['core_hours']:>9.3g} "
                 f"{t['gpu_hours']:>9.3g}")
    if any(r.estimate for r in (cpu, gpu) if r is not None):
        lines.append("  ESTIMATE: rates from published peaks or nominal values with assumed efficiencies; "
                     "measure yours with lemmse bench --rates-out FILE --rates-config CONFIG")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lemmse.plan.config import load_config
    from lemmse.plan.sweep import figure_coverage, make_plan, rule_jobs, study_jobs

    if args.compare is not None and not args.cost:
        raise CliError("--compare needs --cost")
    if (args.rates is not None or args.device_profile is not None) and not args.cost:
        raise CliError("--rates and --device-profile need --cost")
    plan = make_plan(load_config(args.config))
    rates = _rates(args) if args.cost else None  # a bad rates file fails before the long part
    coverage = figure_coverage(plan)
    figures = [name for name, why in coverage.items() if why is None]
    jobs = rule_jobs(plan, figures)
    out = format_plan(args.config, plan, coverage, jobs, study_jobs(plan))
    if args.cost:
        from lemmse.cost import predict, read_benchmarks

        cpu, gpu = rates
        clocks = {r.clock for r in (cpu, gpu) if r is not None}
        if len(clocks) > 1:
            raise CliError("--rates measured CPU time (--rates-clock cpu) cannot be mixed with a wall-time profile")
        measured = read_benchmarks(args.compare, clocks.pop()) if args.compare is not None else None
        out += "\n" + format_cost(predict(plan, figures, cpu, gpu), cpu, gpu, measured)
    sys.stdout.write(out + "\n")
    return 0
