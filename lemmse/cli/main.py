"""The ``lemmse`` command: ``estimate``, ``data``, ``train``, ``infer``, ``plan``, ``bench``, ``bench-train``
subcommands.

Every input problem ends the same way: one line ``lemmse: error: <message>`` on stderr, exit
status 2, no traceback, nothing written. ``--help`` of each subcommand documents every flag.
"""
from __future__ import annotations

import sys

from lemmse import __version__
from lemmse.allocator import retain_freed_memory
from lemmse.cli import data as data_cmd
from lemmse.cli import estimate as estimate_cmd
from lemmse.cli import figures as figures_cmd
from lemmse.cli import infer as infer_cmd
from lemmse.cli import plan as plan_cmd
from lemmse.cli import results as results_cmd
from lemmse.cli import train as train_cmd
from lemmse.cli.common import (EXIT_FAILURE, EXIT_USAGE, PROG, ArgumentParser, HelpFormatter,
                               configure_logging, release_logging, report_error)
from lemmse.errors import LemmseInputError

DESCRIPTION = """\
Closed-form MMSE, E-MMSE and local-equivariant (LE-)MMSE estimators for imaging inverse problems
(denoising, inpainting, deconvolution), the datasets and measurements they are computed on, the
translation-equivariant networks they are compared with, and their benchmark.

Run `lemmse COMMAND --help` for the flags of a command.
"""


def build_parser() -> ArgumentParser:
    """The top-level parser with its subcommands (importing no torch: ``--help`` stays fast)."""
    from lemmse import bench, bench_shards, bench_training

    parser = ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    estimate_cmd.add_parser(sub)
    train_cmd.add_parser(sub)
    infer_cmd.add_parser(sub)
    data_cmd.add_parser(sub)
    results_cmd.add_parser(sub)
    plan_cmd.add_parser(sub)
    bench.add_parser(sub)
    bench_training.add_parser(sub)
    bench_shards.add_parser(sub)
    figures_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except LemmseInputError as err:
        report_error(err)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help, --version
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_USAGE)
    configure_logging(args.verbose, args.quiet)
    retain_freed_memory()
    try:
        return int(args.func(args))
    except LemmseInputError as err:
        report_error(err)
        return EXIT_USAGE
    except MemoryError:
        report_error("out of memory; lower --max-memory (or --query-block/--key-block) and try again")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:
        if "out of memory" in str(err).lower():  # torch.OutOfMemoryError is a RuntimeError
            report_error(f"out of memory on the device; lower --max-memory and try again ({err})")
            return EXIT_FAILURE
        raise
    finally:
        release_logging()


if __name__ == "__main__":
    raise SystemExit(main())
