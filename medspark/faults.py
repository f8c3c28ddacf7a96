"""Named crash points for crash-safety tests: `MEDSPARK_CRASH_AT=<point>` makes the process
SIGKILL itself when it reaches that point (`MEDSPARK_CRASH_AT=published:catalog`), exactly as
an out-of-memory kill or `kill -9` would. Unset (always, outside tests), a point costs one
dictionary lookup."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die here, without any clean-up, when the environment names this point (or a prefix
    of it: `published:features` matches every feature set's table)."""
    target = os.environ.get("MEDSPARK_CRASH_AT")
    if target and name.startswith(target):
        os.kill(os.getpid(), signal.SIGKILL)
