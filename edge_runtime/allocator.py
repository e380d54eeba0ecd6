"""Keep freed frame-sized memory in the process instead of returning it to the kernel.

Every decoded frame is a new array (``cv2.imdecode`` cannot decode into a buffer we own):
about 0.9 MB at 640x480, plus the decoder's own scratch. glibc's defaults hand blocks that
large back to the kernel when they are freed (``mmap``, or trimming the top of the heap), so
the next frame page-faults its memory in again: measured about 420 page faults and 0.4 ms
of kernel time per 640x480 frame, half the cost of a decode (docs/performance.md). Raising
the mmap and trim thresholds makes glibc reuse the freed blocks. Other C libraries are left
alone.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap and are reused: a 1080p BGR frame is 6.2 MB, and the
# decoder's scratch comes with it.
MMAP_THRESHOLD_BYTES = 16 * 1024**2
# Free memory a heap keeps at its top before giving it back: a few frames, not more, so the
# resident size stays near the working set (measured +6 MB on the MobileNetV2 bench).
TRIM_THRESHOLD_BYTES = 16 * 1024**2


def retain_freed_memory() -> bool:
    """Tune glibc's allocator for per-frame buffers; False where it does not apply."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done: bool = (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                  and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    log.debug("allocator: freed frame buffers are %s", "kept" if done else "not kept")
    return done
