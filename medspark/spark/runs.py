"""What every job shares: its run (id, lease, clean-up) and its manifest, in one schema.

Every job has the same skeleton: `with job_run(lake, "features") as run:` -> read lake tables
(the `Lake` records the versions read) -> transform -> commit each table it writes once (the
`Lake` records the versions committed) -> `run.manifest(...)` writes `_runs/<run_id>.json`.
The manifest's fields are documented in docs/manifest.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from medspark.config import Settings, settings_dict
from medspark.lake import Lake, new_run_id
from medspark.versions import library_versions

log = logging.getLogger(__name__)
MANIFEST_VERSION = 2
READER = "delta-log file list (deltalake snapshot -> spark.read.parquet of exactly its files)"


@dataclass
class JobRun:
    """One run of a job: its id, start time and lake (whose reads/commits it reports)."""

    job: str
    lake: Lake
    run_id: str
    started: float = field(default_factory=time.time)

    def manifest(self, spark, settings: Settings, counts: dict[str, Any],
                 outputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Write and return `_runs/<run_id>.json` (see docs/manifest.md)."""
        return job_manifest(spark, self.lake, self.job, self.run_id, self.started, settings,
                            {"counts": counts, "outputs": outputs or {}, **extra})


@contextmanager
def job_run(lake: Lake, job: str, run_id: str | None = None) -> Iterator[JobRun]:
    """Hold a run lease while the job runs (so no other run mistakes its staged files for a
    dead run's), remove what dead runs left, and clean up this run's own uncommitted files
    whether it succeeds or fails."""
    run = JobRun(job, lake, run_id or new_run_id(job))
    lake.begin_run(run.run_id, job)
    try:
        yield run
    finally:
        lake.end_run(run.run_id)


def job_manifest(spark, lake: Lake, job: str, run_id: str, started: float,
                 settings: Settings, extra: dict[str, Any]) -> dict[str, Any]:
    """The one manifest builder: identity, timing, configuration, versions, Spark, the table
    versions read and committed, then the job's own fields (`counts`, `outputs`, ...)."""
    from medspark.session import driver_jvm_flags

    try:
        jvm_flags = driver_jvm_flags(spark)
    except Exception:  # noqa: BLE001 - a remote driver: not inspectable from here
        jvm_flags = []
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "job": job,
        "lake": lake.root,
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "duration_s": round(time.time() - started, 3),
        "config": settings_dict(settings),
        "versions": library_versions(),
        "spark": {"master": spark.sparkContext.master, "version": spark.version,
                  "driver_jvm_flags": jvm_flags},
        "tables_read": dict(lake.reads),
        "tables_written": dict(lake.commits),
        "table_reader": READER,
        **extra,
    }
    manifest["manifest_path"] = lake.write_manifest(spark, run_id, manifest)
    return manifest


def count_by(df, column: str, limit: int = 1000) -> dict[str, int]:
    """Rows per value of `column` (nulls left out), grouped and summed in Spark; at most
    `limit` distinct values come back (a reason code, not free text, belongs here)."""
    from pyspark.sql import functions as F

    rows = (df.where(F.col(column).isNotNull()).groupBy(column).count()
            .orderBy(F.desc("count")).limit(limit).collect())
    return {r[column]: int(r["count"]) for r in rows}


def reason_of(column: str):
    """The reason code of an error text `<reason>: <detail>` (the whole text when it has no
    colon), as a Spark column."""
    from pyspark.sql import functions as F

    return F.trim(F.substring_index(F.col(column), ":", 1))
