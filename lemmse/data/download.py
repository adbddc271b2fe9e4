"""Opt-in downloads (``download: true``) for clusters with internet; the tests fetch from a file:// mirror.

A file is fetched to a temporary name next to its target, checked against its published MD5,
then renamed into place, so an interrupted download never looks like a finished one.
"""
from __future__ import annotations

import hashlib
import logging
import os
import urllib.request
from pathlib import Path

from lemmse.errors import LemmseInputError

log = logging.getLogger(__name__)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, md5: str) -> Path:
    """Download ``url`` to ``target`` unless it is already there with the right ``md5``."""
    target = Path(target)
    if target.exists() and md5sum(target) == md5:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    log.info("downloading %s -> %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        got = md5sum(tmp)
        if got != md5:
            raise LemmseInputError(f"download of {url} has MD5 {got}, expected {md5}; not using it")
        os.replace(tmp, target)
    except OSError as err:
        raise LemmseInputError(f"could not download {url} to {target}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return target
