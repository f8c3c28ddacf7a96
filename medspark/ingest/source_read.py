"""Reading one source file's bytes in a worker, in bounded time.

A read must never hang a batch job: a FIFO is never opened (opening one blocks until a writer
comes), a file over the size limit is never read, and every read is bounded by
`ingest.limits.read_timeout_s`, after which the file is quarantined as `read_timeout` and the
task goes on. How the bound is enforced depends on where the file lives:

- **network, FUSE and unknown mounts** (NFS, CIFS, sshfs, 9p, ...) and object stores: a hung
  server leaves the reading thread in an uninterruptible wait, so the read runs in a daemon
  thread the caller stops waiting for (the stuck thread is abandoned);
- **local disk and memory filesystems** (ext4, xfs, btrfs, tmpfs, overlay, ...): a read there
  cannot wait on a network, and a thread per file costs more than a 512x512 CT slice's read
  (its start and hand-over: 0.2-0.7 ms a file on a 2-core machine). The read runs in the
  calling thread under an interval timer (SIGALRM) that raises `read_timeout` when the limit
  passes; outside the main thread (no signals there) it falls back to the daemon thread.

The mount of a path is looked up in `/proc/self/mounts` (read once per process); anything not
known to be local counts as a network mount.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from medspark.io.types import Limits, ReadError
from medspark.uris import is_local, local_path

T = TypeVar("T")

# block-device and in-memory filesystems: their reads do not wait on a network
LOCAL_FILESYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat",
    "ntfs", "ntfs3", "hfsplus", "apfs", "tmpfs", "ramfs", "overlay", "squashfs", "iso9660",
    "udf", "erofs"})


def with_timeout(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run a blocking read in a daemon thread and give up after `timeout_s` (a hung network
    mount or object store must not hang the job: the file is quarantined and the task goes
    on; the stuck thread is abandoned)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True, name="medspark-read")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise ReadError("read_timeout", f"{what} took longer than {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class _Overrun(BaseException):
    """Raised by the timer's signal handler inside a read (not an OSError a reader catches)."""


def under_alarm(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """`fn()` in the calling (main) thread; `read_timeout` once `timeout_s` has passed."""
    armed = True

    def overrun(signum: int, frame: Any) -> None:
        if armed:  # a signal that arrives after the read ended is ignored
            raise _Overrun

    previous = signal.signal(signal.SIGALRM, overrun)
    try:
        # the timer counts whole microseconds: a shorter one would disarm it, not fire at once
        signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 1e-6))
        return fn()
    except _Overrun:
        raise ReadError("read_timeout", f"{what} took longer than {timeout_s:g} s") from None
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bounded(fn: Callable[[], T], timeout_s: float, what: str, *, local_disk: bool) -> T:
    """`fn()` bounded by `timeout_s`: in this thread under `under_alarm` for a local disk read made
    from the main thread with no other timer set, else in an abandonable daemon thread
    (`with_timeout`)."""
    if (local_disk and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0):  # nobody else's timer running
        return under_alarm(fn, timeout_s, what)
    return with_timeout(fn, timeout_s, what)


@lru_cache(maxsize=1)
def _mounts() -> tuple[tuple[str, str], ...]:
    """(mount point, filesystem type) of this process, longest mount point first."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            rows = [fields[1:3] for fields in map(str.split, fh) if len(fields) >= 3]
    except OSError:  # not Linux: every mount counts as a network one
        return ()
    decoded = [(_unescape(point), kind) for point, kind in rows]
    return tuple(sorted(decoded, key=lambda m: len(m[0]), reverse=True))


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_of(path: str) -> str | None:
    """The filesystem type of the mount holding `path` (None when unknown)."""
    path = os.path.abspath(path)
    for point, kind in _mounts():
        if path == point or path.startswith(point.rstrip("/") + "/"):
            return kind
    return None


def on_local_disk(path: str) -> bool:
    """Whether `path` lives on a block-device or memory filesystem (see LOCAL_FILESYSTEMS)."""
    return filesystem_of(path) in LOCAL_FILESYSTEMS


def read_source(uri: str, limits: Limits, timeout_s: float | None = None) -> bytes:
    """Read a file's bytes in the Python worker: a regular file only (a FIFO, socket or device
    is never opened: opening a FIFO blocks forever), size limit checked before reading, the
    whole read bounded by `timeout_s` (module doc)."""
    if is_local(uri):
        path = local_path(uri)
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            kind = ("directory" if stat.S_ISDIR(st.st_mode) else "FIFO" if stat.S_ISFIFO(
                st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device")
            raise ReadError("not_a_regular_file", f"not a regular file ({kind})")
        limits.check_file_bytes(st.st_size)
        local_disk = on_local_disk(path)

        def read() -> bytes:
            with open(path, "rb") as fh:
                return fh.read()
    else:
        from pyarrow import fs as pafs

        filesystem, path = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(uri)
        if info.type != pafs.FileType.File:
            raise ReadError("not_a_regular_file", f"not a regular file ({info.type.name})")
        limits.check_file_bytes(info.size or 0)
        local_disk = False

        def read() -> bytes:
            with filesystem.open_input_stream(path) as stream:
                return stream.read()
    if timeout_s is None:
        return read()
    return bounded(read, timeout_s, "reading the file", local_disk=local_disk)
