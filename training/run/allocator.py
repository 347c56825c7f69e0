"""Keep freed host memory in the process, so large CPU tensors do not page-fault on every allocation.

glibc's ``malloc`` serves blocks above its mmap threshold (128 KiB at first, raised adaptively up to 32 MiB) with a
fresh ``mmap`` and returns them to the kernel on ``free``; it also gives back the top of the heap once more than the
trim threshold is free there. A CPU training step allocates and frees tens of activations of several MiB each, so
every one of them is re-faulted page by page (and zeroed by the kernel) on each step: on this project's 2-core CPU
machine that was up to a sixth of an sMNIST step (bench/README.md). Raising both thresholds makes ``free`` keep the
memory for the next step's tensors of the same size, as PyTorch's caching allocator does on GPU.

The cost is that up to ``TRIM_THRESHOLD_BYTES`` of freed memory stay mapped to the process; nothing changes in what is
computed. Settings a user gave glibc through its environment variables are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): larger blocks are still mmapped.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")
_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (``MMAP_THRESHOLD_BYTES``, ``TRIM_THRESHOLD_BYTES``) for this process and
    the data workers it forks.

    Returns True when the thresholds are in effect (now or from an earlier call), False where they do not apply: not
    glibc (macOS, Windows, musl), or the user configured the allocator through ``MALLOC_*`` / ``GLIBC_TUNABLES`` or
    preloads another one (jemalloc, tcmalloc).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success. Setting the trim threshold alone would switch the adaptive mmap threshold off and
    # leave it at 128 KiB (every activation mmapped: slower than the default), so the mmap threshold goes first.
    if libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) refused; allocator left as is", MMAP_THRESHOLD_BYTES)
        return False
    if libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        log.debug("mallopt(M_TRIM_THRESHOLD, %d) refused", TRIM_THRESHOLD_BYTES)
        return False
    _applied = True
    return True


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it; musl's mallopt is a no-op stub
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc
