"""The lake: the one place that knows table names, paths, partitioning and run manifests."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    import pyarrow as pa

TABLES = ("catalog", "pixels", "quarantine")
RUNS_DIR = "_runs"


def is_local(uri: str) -> bool:
    """True for plain paths and file: URIs."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(uri: str) -> str:
    """The filesystem path of a plain path or a file: URI."""
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme == "file" else uri


def new_run_id(job: str, now: dt.datetime | None = None) -> str:
    """`<job>-<UTC timestamp>-<random>`: sortable, unique per run."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{job}-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


class Lake:
    """Paths and I/O of one lake root (a local directory or any Hadoop-compatible URI)."""

    def __init__(self, root: str):
        root = root.rstrip("/") or "/"
        self.root = os.path.abspath(local_path(root)) if is_local(root) else root

    def path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def partition_path(self, table: str, ingest_date: dt.date) -> str:
        return f"{self.path(table)}/ingest_date={ingest_date.isoformat()}"

    # -- existence and reading ---------------------------------------------------------------
    def _fs(self, spark, path: str):
        jvm = spark.sparkContext._jvm
        jpath = jvm.org.apache.hadoop.fs.Path(path)
        return jpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), jpath

    def exists(self, spark, table: str) -> bool:
        path = self.path(table)
        if is_local(path):
            return os.path.isdir(path) and any(
                name.startswith("ingest_date=") or name.endswith(".parquet")
                for name in os.listdir(path)
            )
        fs, jpath = self._fs(spark, path)
        return bool(fs.exists(jpath))

    def read(self, spark, table: str):
        """A lake table as a DataFrame (all partitions)."""
        return spark.read.parquet(self.path(table))

    def count_rows(self, spark, table: str, ingest_date: dt.date) -> int:
        """Rows in one partition: from Parquet footers for local lakes, via Spark otherwise."""
        path = self.partition_path(table, ingest_date)
        if is_local(path):
            import pyarrow.parquet as pq

            folder = local_path(path)
            return sum(pq.ParquetFile(os.path.join(folder, name)).metadata.num_rows
                       for name in os.listdir(folder)
                       if name.endswith(".parquet") and not name.startswith((".", "_")))
        return spark.read.parquet(path).count()

    # -- writing ----------------------------------------------------------------------------
    def write_partition(self, df, table: str, ingest_date: dt.date, compression: str = "snappy"):
        """Replace one `ingest_date` partition of a table with `df` (idempotent re-runs)."""
        (
            df.write.mode("overwrite")
            .option("compression", compression)
            .parquet(self.partition_path(table, ingest_date))
        )

    def staging_path(self, run_id: str, table: str) -> str:
        """Where a run's workers write files before the driver commits them (hidden from
        readers: Spark skips names starting with `_`)."""
        return f"{self.root}/_staging/{run_id}/{table}"

    def commit_staged(self, staging: str, table: str, ingest_date: dt.date,
                      schema: pa.Schema) -> list[str]:
        """Replace a partition with the Parquet files a run's workers staged (local lakes).

        Staged names hash their rows' image ids and a Spark retry or speculative copy of a task
        sees the same input, so a re-attempt rewrites the same file instead of adding one; the
        run's counts then check that the published rows equal the catalog's planes.
        """
        import pyarrow.parquet as pq

        target = local_path(self.partition_path(table, ingest_date))
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        folder = local_path(staging)
        files = sorted(n for n in os.listdir(folder) if n.endswith(".parquet")
                       and not n.startswith(".")) if os.path.isdir(folder) else []
        for name in files:
            os.replace(os.path.join(folder, name), os.path.join(target, name))
        if not files:  # keep the partition readable with its schema
            pq.write_table(schema.empty_table(), os.path.join(target, "part-empty.parquet"))
        return files

    def drop_staging(self, run_id: str) -> None:
        shutil.rmtree(local_path(f"{self.root}/_staging/{run_id}"), ignore_errors=True)
        with contextlib.suppress(OSError):  # remove _staging/ once no run uses it
            os.rmdir(local_path(f"{self.root}/_staging"))

    def write_manifest(self, spark, run_id: str, manifest: dict[str, Any]) -> str:
        """Write `_runs/<run_id>.json` and return its path."""
        path = f"{self.path(RUNS_DIR)}/{run_id}.json"
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        if is_local(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp"
            with open(tmp, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        else:
            fs, jpath = self._fs(spark, path)
            out = fs.create(jpath, True)
            out.write(bytearray(text.encode()))
            out.close()
        return path

    def read_manifest(self, run_id: str) -> dict[str, Any]:
        """A run manifest of a local lake."""
        with open(f"{self.path(RUNS_DIR)}/{run_id}.json") as fh:
            return json.load(fh)
