"""Bounded reads of source files (no JVM): the timer path for local disks, the abandonable
thread for network and unknown mounts, and the mount lookup that chooses between them."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from medspark.ingest import source_read as sr
from medspark.io.types import Limits, ReadError


def test_local_disk_and_other_mounts_are_told_apart(tmp_path):
    assert sr.on_local_disk(str(tmp_path))  # the test's temp folder is on a local disk
    assert sr.filesystem_of("/proc/self/status") == "proc"
    assert not sr.on_local_disk("/proc/self/status")


def test_mount_points_with_escaped_characters_are_decoded():
    assert sr._unescape("/mnt/with\\040space\\011tab\\134slash") == "/mnt/with space\ttab\\slash"


def test_a_blocking_call_in_the_main_thread_is_cut_by_the_timer():
    before = signal.getsignal(signal.SIGALRM)
    start = time.perf_counter()
    with pytest.raises(ReadError) as err:
        sr.under_alarm(lambda: time.sleep(30), 0.2, "reading the file")
    assert err.value.error_class == "read_timeout"
    assert time.perf_counter() - start < 5
    # the caller's handler is back and no timer is left running
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert sr.under_alarm(lambda: 42, 5.0, "x") == 42


def test_a_read_that_never_returns_is_abandoned_in_its_thread(tmp_path):
    """Opening a FIFO blocks until a writer comes: the stand-in for a hung network mount."""
    fifo = tmp_path / "hung"
    os.mkfifo(fifo)

    def read() -> bytes:
        with open(fifo, "rb") as fh:
            return fh.read()

    start = time.perf_counter()
    with pytest.raises(ReadError) as err:
        sr.with_timeout(read, 0.3, "reading the file")
    assert err.value.error_class == "read_timeout"
    assert time.perf_counter() - start < 5
    # let the abandoned thread finish: a writer opens and closes the FIFO
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_read_source_bounds_local_reads_from_any_thread(tmp_path):
    path = tmp_path / "a.dcm"
    path.write_bytes(b"x" * 4096)
    assert sr.read_source(str(path), Limits(), 5.0) == b"x" * 4096
    with pytest.raises(ReadError, match="took longer"):
        sr.read_source(str(path), Limits(), 1e-9)  # the timer fires before the read ends
    found: dict[str, object] = {}

    def in_a_thread() -> None:  # no signals outside the main thread: the daemon thread bounds it
        found["bytes"] = sr.read_source(str(path), Limits(), 5.0)

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert found["bytes"] == b"x" * 4096
