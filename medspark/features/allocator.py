"""Keep freed heap memory for reuse (glibc), so numpy temporaries are not page-faulted back in.

One ``extract`` call allocates many short-lived arrays of a few hundred KiB. By default glibc
hands the freed top of the heap back to the kernel after the call, and the next call faults
those pages in again: ~1500 minor faults, about a quarter of the run time on a 256x256 plane.
Raising ``M_TOP_PAD`` makes glibc keep up to :data:`TOP_PAD` bytes of it instead.

The setting is process-wide and is applied once, on the first :func:`extract` call (set
``MEDSPARK_FEATURES_KEEP_HEAP=0`` to opt out). It changes no result, only speed and the memory
a worker keeps; it is a no-op outside Linux/glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

TOP_PAD = 64 << 20  # bytes of freed heap glibc may keep
_M_TOP_PAD = -2  # mallopt parameter number, from glibc's <malloc.h>
_applied: bool | None = None


def keep_freed_memory(top_pad: int = TOP_PAD) -> bool:
    """Ask glibc to keep ``top_pad`` bytes of freed heap; True if the setting is in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or os.environ.get("MEDSPARK_FEATURES_KEEP_HEAP") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (and mallopt's M_TOP_PAD)  # noqa: B018
    except (OSError, AttributeError):
        return False
    _applied = bool(libc.mallopt(_M_TOP_PAD, int(top_pad)))
    return _applied
