"""One nightly run per lake: `<lake>/_locks/nightly.lock`.

The holder keeps an exclusive `flock` on the file for its whole run (the kernel releases it
when the process dies, even by `kill -9`) and writes who it is (pid, host, start, heartbeat)
into it. A second run on this host finds the file locked: exit 3 at once. A run that finds the
file unlocked but with a holder recorded took over from a run that died (said so); on a shared
filesystem where another host's flock is not visible, a holder whose heartbeat is older than
`lock_timeout` is taken to be dead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class LockHeld(RuntimeError):
    """Another run holds the lake's nightly lock (exit code 3)."""


@dataclass
class NightlyLock:
    """The held lock; `took_over` describes the dead holder it replaced, if any."""

    path: str
    fd: int
    took_over: dict[str, Any] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _beat: threading.Thread | None = None

    def _write(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        """Clear the holder record and unlock (a clean end leaves nothing to take over)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(5)
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)


def _holder(fd: int) -> dict[str, Any] | None:
    raw = os.pread(fd, 65536, 0)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"unreadable": raw[:200].decode(errors="replace")}


def acquire(lake_root: str, date: str, timeout_hours: float,
            heartbeat_s: float = 60.0, probe: bool = False) -> NightlyLock | None:
    """Take the lake's nightly lock or raise LockHeld naming the holder (`probe`: only check
    that it could be taken, changing nothing)."""
    folder = os.path.join(lake_root, "_locks")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "nightly.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder(fd)
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise LockHeld(f"another nightly run holds {path}: {_describe(holder)}") from None
        raise
    holder = _holder(fd)
    took_over = None
    if holder:
        age_h = (time.time() - float(holder.get("heartbeat", holder.get("started", 0)))) / 3600
        same_host = holder.get("host") == socket.gethostname()
        if not same_host and age_h < timeout_hours:
            os.close(fd)
            raise LockHeld(f"a nightly run on {holder.get('host')} holds {path} "
                           f"({_describe(holder)}; renewed {age_h * 60:.0f} min ago)")
        took_over = {**holder, "reason": "its process is gone" if same_host else
                     f"not renewed for {age_h:.1f} h (> nightly.lock_timeout_hours)"}
    if probe:
        os.close(fd)
        return None
    lock = NightlyLock(path, fd, took_over)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "date": date,
          "started": time.time(), "heartbeat": time.time()}
    lock._write(me)

    def beat() -> None:
        while not lock._stop.wait(heartbeat_s):
            with contextlib.suppress(OSError):
                lock._write({**me, "heartbeat": time.time()})

    lock._beat = threading.Thread(target=beat, daemon=True, name="medspark-lock-heartbeat")
    lock._beat.start()
    return lock


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "holder unknown"
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)) if started else "?"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, night {holder.get('date')}, "
            f"started {when} UTC")
