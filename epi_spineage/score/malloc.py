"""Keep freed image buffers in the process instead of handing them back to the kernel.

Decoding and preprocessing one image allocates and frees several buffers of a few megabytes
(pixels, the float crop, the canvas). With glibc's defaults each of these is either its own
``mmap`` or is trimmed off the heap top when freed, so the next image page-faults (and the kernel
zero-fills) every page again: measured here, ``process_member`` on a 1200 x 800 phantom at
1024 x 512 took 8 ms per image instead of 3.7 ms for the very same steps, and a small CPU model
ran at half speed. Raising the two thresholds lets the heap reuse those pages.

Torch-free; glibc only (elsewhere, and when ``EPI_SPINEAGE_MALLOC_TUNING=0``, it does nothing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Allocations up to this size come from the heap (and are reused) instead of a fresh mmap.
MMAP_THRESHOLD_BYTES = 64 << 20
#: Free memory at the heap top kept for reuse before it is returned to the kernel.
TRIM_THRESHOLD_BYTES = 256 << 20

_done = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (once); True when they were set.

    The cost is memory: up to ``TRIM_THRESHOLD_BYTES`` of freed heap stays with the process
    rather than going back to the system.
    """
    global _done
    if _done:
        return True
    if os.environ.get("EPI_SPINEAGE_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    if not ok:
        log.debug("mallopt refused the thresholds; keeping the allocator's defaults")
    _done = ok
    return ok
