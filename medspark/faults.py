"""Named crash points for crash-safety tests: `MEDSPARK_CRASH_AT=<point>` makes the process
SIGKILL itself when it reaches that point (`MEDSPARK_CRASH_AT=published:catalog`), exactly as
an out-of-memory kill or `kill -9` would. Unset (always, outside tests), a point costs one
dictionary lookup."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die here, without any clean-up, when the environment names this point."""
    if os.environ.get("MEDSPARK_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
