"""Progress of a nightly run: a line per stage (and a live task count on long stages) on a
terminal; structured log lines (JSON with `--json-log`) otherwise."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO


class Progress:
    """Stage start/end lines and periodic progress of the running stage."""

    def __init__(self, json_log: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.json_log = json_log
        self.tty = not json_log and self.stream.isatty()
        self._lock = threading.Lock()
        self._live = False

    def event(self, stage: str, event: str, **fields: Any) -> None:
        """One structured event: `start`, `progress`, `ok`, `failed`, `skipped`, ..."""
        with self._lock:
            if self.json_log:
                doc = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                       "stage": stage, "event": event, **fields}
                self.stream.write(json.dumps(doc, default=str) + "\n")
            elif event == "progress":
                if not self.tty:
                    return  # plain logs: start/end lines only
                done, total = fields.get("done"), fields.get("total")
                self.stream.write(f"\r  {stage:<12} {fields.get('what', 'tasks')} "
                                  f"{done}/{total}   ")
                self._live = True
            else:
                if self._live:
                    self.stream.write("\n")
                    self._live = False
                extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
                self.stream.write(f"[{stage}] {event} {extra}".rstrip() + "\n")
            self.stream.flush()


class TaskPoller:
    """Polls a `() -> (done, total)` function every `every_s` seconds while a stage runs
    (Spark's status tracker: tasks of the active stages) and reports it."""

    def __init__(self, progress: Progress, stage: str, poll: Callable[[], tuple[int, int]],
                 every_s: float = 2.0):
        self.progress, self.stage, self.poll, self.every_s = progress, stage, poll, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = None
        while not self._stop.wait(self.every_s):
            try:
                done, total = self.poll()
            except Exception:  # noqa: BLE001 - progress must never fail the run
                continue
            if total and (done, total) != last:
                self.progress.event(self.stage, "progress", done=done, total=total,
                                    what="tasks")
                last = (done, total)

    def __enter__(self) -> TaskPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
