r"""Keep freed heap memory inside the process, so that a loop that allocates and frees the same
large buffers on every iteration stops faulting their pages in from the kernel each time.

glibc's ``malloc`` hands a block of at least ``M_MMAP_THRESHOLD`` bytes its own ``mmap`` and
returns it to the kernel on ``free``, and it gives the top of the heap back (``brk``) once more
than ``M_TRIM_THRESHOLD`` bytes there are free. Both start at 128 KiB and adapt to the blocks a
process frees. A training step of the small networks allocates and frees, every step, dozens of
0.5–1 MiB activations and gradients (a ``32×32×16×16`` float32 tensor is 1 MiB), and the
adaptive thresholds keep giving some of them back: each page then costs a minor fault (kernel
time) when the next step writes it again. Measured on the 2-core development machine, steady
state, one thread: the small ResNet's step faulted 700–1 700 pages in (1.5–3.7 ms of kernel time
in a 13–17 ms step), the PatchMLP's ~1 500, the UNet's ~400; with the thresholds fixed as below,
none of them faults more than ~10 pages a step. The estimator engine's blocked passes free and
reallocate their distance tiles the same way (``lemmse bench --quick``: 3.6 M faults against
1.9 M with the thresholds fixed).

:func:`retain_freed_memory` fixes both thresholds for the rest of the process:

* ``M_MMAP_THRESHOLD = 32 MiB`` (glibc's largest): blocks up to 32 MiB come from the heap, so a
  freed one is reused by the next allocation instead of unmapped; larger blocks are still mapped
  and unmapped on their own, so a job's resident memory never holds on to its few big arrays;
* ``M_TRIM_THRESHOLD = 256 MiB``: the heap keeps up to that much free memory at its top instead
  of giving it back to the kernel after every step.

Setting only one of them is worse than neither: fixing either one switches glibc's adaptation
off for both, so the other stays at 128 KiB (6–15 times the default's faults on the ResNet's step, measured).

The values change speed only, never a result: ``malloc`` returns memory of the same contents
contract either way (uninitialised). Entry points call it — every workflow job
(:func:`lemmse.rules.start`) and every ``lemmse`` command — not the library functions, which do
not change process-wide settings behind their caller's back. A user who tunes ``malloc``
themselves (``MALLOC_*_`` variables or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``) keeps
their settings, and on a C library other than glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

#: ``mallopt`` parameter numbers (``<malloc.h>``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 256 * 2**20

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_applied = False


def user_tunes_malloc(environ=os.environ) -> bool:
    """Whether the environment already sets glibc's ``malloc`` thresholds (then they are left alone)."""
    return (any(name in environ for name in _USER_SETTINGS)
            or "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""))


def retain_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds (see the module docstring); True once they are set.

    Idempotent. Returns False, changing nothing, off glibc or when the user tunes ``malloc``.
    """
    global _applied
    if _applied:
        return True
    if platform.libc_ver()[0] != "glibc" or user_tunes_malloc():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
          and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    if not ok:  # glibc refused a value: it keeps its adaptive defaults for what it did not take
        log.debug("mallopt refused the thresholds; malloc keeps its defaults")
        return False
    _applied = True
    return True
