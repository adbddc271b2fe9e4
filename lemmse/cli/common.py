"""Pieces every subcommand shares: one-line errors, logging, byte sizes, .npy I/O, atomic writes."""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lemmse.errors import LemmseInputError

PROG = "lemmse"
#: Exit status of every input error (bad flag, bad file, bad value), as argparse uses.
EXIT_USAGE = 2
#: Exit status of a failure while computing (out of memory, ...).
EXIT_FAILURE = 1
#: The handler :func:`configure_logging` installs is tagged with this attribute.
_HANDLER_TAG = "_lemmse_cli_handler"


class CliError(LemmseInputError):
    """A bad command line or file; printed as ``lemmse: error: <message>``, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`CliError` instead of printing usage and exiting.

    The caller prints the single line ``lemmse: error: ...``; ``--help`` still prints and exits 0.
    Subparsers made with ``add_subparsers`` inherit this class.
    """

    def error(self, message: str):  # type: ignore[override]
        raise CliError(message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-made line breaks of descriptions/epilogs; wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def one_line(message: object) -> str:
    """``message`` squeezed onto one line (an error report must stay one line)."""
    return " ".join(str(message).split()) or "unknown error"


def report_error(message: object) -> None:
    """Print ``lemmse: error: <message>`` (one line) to stderr."""
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr, flush=True)


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="log more: once for DEBUG details (default level is INFO: what is "
                            "computed and how long it took, on stderr)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="log only warnings and errors, and show no progress bar")


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be swapped, e.g. by pytest)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


def configure_logging(verbose: int, quiet: bool) -> None:
    """Send the ``lemmse`` loggers to the current stderr at the level the flags ask for.

    Safe to call repeatedly (tests run ``main`` many times in one process): the handler a
    previous call installed is replaced, other handlers are left alone.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logger = logging.getLogger("lemmse")
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_TAG, False):
            logger.removeHandler(handler)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    setattr(handler, _HANDLER_TAG, True)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def release_logging() -> None:
    """Undo :func:`configure_logging` (``main`` calls it on return: in-process callers such as
    tests or notebooks get back the logging they had)."""
    logger = logging.getLogger("lemmse")
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_TAG, False):
            logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_bytes(text: str) -> int:
    """A byte count: ``1073741824``, ``1e9``, ``512MiB``, ``2GiB``, ``1.5GB``, ``2G``.

    ``KiB/MiB/GiB/TiB`` and bare ``K/M/G/T`` are powers of 1024; ``KB/MB/GB/TB`` powers of 1000.
    Used as an argparse ``type``; raises :class:`argparse.ArgumentTypeError`.
    """
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a byte size: {text!r} (write e.g. 1073741824, 512MiB or 2GiB)")
    number, prefix, binary, b = match.groups()
    base = 1000 if (prefix and b and not binary) else 1024
    value = float(number) * base ** _POWERS[prefix.lower()]
    if not (1 <= value < 2**63):
        raise argparse.ArgumentTypeError(f"byte size {text!r} must be at least 1 byte")
    return int(value)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def load_images(path: Path, role: str, flag: str) -> np.ndarray:
    """Read a ``(count, C, H, W)`` float ``.npy`` (never unpickling); errors name ``flag`` and file.

    float16 is widened to float32; integer, complex, object and structured arrays are refused,
    as are NaN and inf.
    """
    where = f"{flag} {path}"
    if not path.exists():
        raise CliError(f"{where}: no such file")
    if path.is_dir():
        raise CliError(f"{where}: is a directory, expected a .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise CliError(f"{where}: cannot be read as a .npy array ({one_line(err)})") from err
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise CliError(f"{where}: is a .npz archive, expected a single .npy array")
    if array.dtype.kind != "f":
        raise CliError(f"{where}: {role} must hold floats, got dtype {array.dtype}")
    if array.ndim != 4:
        raise CliError(f"{where}: {role} must have shape (count, C, H, W), got shape {array.shape}")
    if array.shape[0] == 0:
        raise CliError(f"{where}: {role} holds no image (shape {array.shape})")
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CliError(f"{where}: {role} contains NaN or inf (first at index {index}, value {array[index]})")
    return np.ascontiguousarray(array)


def check_output_path(path: Path, flag: str) -> None:
    """Fail early (before computing) when ``path`` cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CliError(f"{flag} {path}: is a directory, expected a file name")
    if not parent.is_dir():
        raise CliError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: directory {parent} is not writable")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_outputs() -> Iterator[Callable[[Path, Callable[[object], None]], None]]:
    """Write several files all-or-nothing.

    Inside the block, ``stage(path, writer)`` calls ``writer(fileobj)`` on a temporary file in
    ``path``'s directory. Only when the block ends without error are all temporary files moved
    onto their paths with :func:`os.replace` (atomic per file); otherwise they are deleted and no
    target is touched.
    """
    staged: list[tuple[str, Path]] = []

    def stage(path: Path, writer: Callable[[object], None]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
        staged.append((tmp, path))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())

    try:
        yield stage
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
