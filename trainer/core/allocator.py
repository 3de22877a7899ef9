"""Keep freed memory inside the process (glibc's malloc), so each outer step reuses it.

An outer step allocates and frees the same large temporaries every time (vmapped
activations, their gradients). With glibc's defaults, blocks above the dynamic mmap
threshold are returned to the kernel when freed and faulted back in, zeroed, on the next
step; on CPU that costs FO-MALTML on Omniglot families as much system time as compute
(`scripts/bench_allocator.py`). Raising the mmap and trim thresholds keeps those pages in
the heap. Results are unchanged: only where memory comes from differs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (malloc.h) and the values: blocks up to 1 GiB from the heap, up to
# 1 GiB of free heap kept, the heap grown 256 MiB at a time.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 256 << 20))
OPT_OUT = "FEWTASK_MALLOC"  # =default keeps glibc's own settings (the benchmark's baseline)


def keep_freed_memory() -> bool:
    """Apply SETTINGS through mallopt; True when applied (Linux with glibc, no opt-out)."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return mallopt is not None and all(mallopt(param, value) == 1 for param, value in SETTINGS)
