"""The lake: the one place that knows table names, paths, partitioning, keys and run manifests.

Every table is a Delta table (`medspark.delta`). Jobs read a table's snapshot (`Lake.read`: the
file list from the Delta log, never a folder listing) and publish each table they write in ONE
commit (`Lake.write_table` for Spark DataFrames, `Lake.commit_staged` for files the Python
workers wrote). A commit never removes rows another run produced: rows whose key is already in
the table are not added again, so a re-run commits nothing new, and only `replace_where` (a run
replacing its own partition, e.g. a re-run of the same discovery) removes anything.
The `Lake` object records the versions a job read and committed (`reads`, `commits`), which the
job's manifest reports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medspark import delta
from medspark.delta import CommitResult, Snapshot, StagedFile
from medspark.faults import crash_point
from medspark.uris import is_local, local_path, uri_scheme  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
RUNS_DIR = "_runs"
ACTIVE_DIR = "_active"
STALE_RUN_HOURS = 48.0


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its partition columns and the key that identifies a row's source."""

    partition_by: tuple[str, ...]
    keys: tuple[str, ...]


# One Delta table per name; the derived families hold one table per configuration
# (`features/feature_set=<hash>`, ...), since each configuration has its own columns.
TABLES: dict[str, TableSpec] = {
    "catalog": TableSpec(("ingest_date",), ("image_id", "source_path")),
    "pixels": TableSpec(("ingest_date",), ("image_id",)),
    "quarantine": TableSpec(("ingest_date",), ("source_path", "source_size", "source_mtime",
                                               "error_class")),
    "masks": TableSpec(("ingest_date",), ("image_id", "roi_name")),
    "preprocessed": TableSpec(("ingest_date",), ("image_id", "augment_index")),
    "features": TableSpec(("ingest_date",), ("image_id", "roi_name")),
    "predictions": TableSpec(("run_date",), ("source", "_key")),
    "predictions_rejected": TableSpec(("run_date",), ("source", "key")),
}
INGEST_TABLES = ("catalog", "pixels", "quarantine")
# family -> the folder level naming its configuration
CONFIG_LEVEL = {"masks": "source", "preprocessed": "pipeline", "features": "feature_set",
                "predictions": "model", "predictions_rejected": "model"}


def table_of(family: str, value: str) -> str:
    """The table of one configuration: `features/feature_set=<hash>`, `masks/source=rtstruct`,
    `preprocessed/pipeline=<hash>`, `predictions/model=<id>`."""
    return f"{family}/{CONFIG_LEVEL[family]}={value}"


def spec_of(table: str) -> TableSpec | None:
    return TABLES.get(table.split("/", 1)[0])


def new_run_id(job: str, now: dt.datetime | None = None) -> str:
    """`<job>-<UTC timestamp>-<random>`: sortable, unique per run."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{job}-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


class Lake:
    """Tables and manifests of one lake root (a local directory or an object-store URI)."""

    def __init__(self, root: str):
        root = root.rstrip("/") or "/"
        self.root = os.path.abspath(local_path(root)) if is_local(root) else root
        self.reads: dict[str, int | None] = {}
        self.commits: dict[str, dict[str, Any]] = {}

    def path(self, table: str) -> str:
        return f"{self.root}/{table}"

    def run_dir(self, table: str, run_id: str) -> str:
        """Where a run's writers put a table's files before its commit
        (`<table>/_stage/<run_id>/`, hidden from readers)."""
        return f"{self.path(table)}/{delta.stage_dir(run_id)}"

    # -- snapshots and reading ---------------------------------------------------------------
    def exists(self, table: str, *legacy: str) -> bool:
        """True when the table has a Delta log (also accepts the older `exists(spark, t)`)."""
        name = legacy[0] if legacy else table
        return delta.table_exists(self.path(name))

    def snapshot(self, table: str, version: int | str | dt.datetime | None = None) -> Snapshot:
        """A table version's files, schema and partitioning (latest by default)."""
        return delta.snapshot(self.path(table), version)

    def version(self, table: str) -> int | None:
        return delta.latest_version(self.path(table))

    def configurations(self, family: str) -> list[str]:
        """The configurations of a derived family that have a table (`feature_set` hashes,
        mask sources, pipelines, model ids): which tables exist, not their data."""
        level = CONFIG_LEVEL[family]
        root = self.path(family)
        if is_local(root):
            names = os.listdir(local_path(root)) if os.path.isdir(local_path(root)) else []
        else:
            import pyarrow.fs as pafs

            fs, base = pafs.FileSystem.from_uri(root)
            names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(
                base, allow_not_found=True))]
        return sorted(n.split("=", 1)[1] for n in names if n.startswith(f"{level}=")
                      and delta.table_exists(f"{root}/{n}"))

    def read(self, spark, table: str, version: int | str | dt.datetime | None = None,
             snap: Snapshot | None = None):
        """A table's snapshot as a DataFrame, partition columns included; records the version
        read. A table that does not exist yet reads as an error naming the job that makes it."""
        snap = snap or self.snapshot(table, version)
        if not snap.exists:
            from medspark.config import ConfigError

            family = table.split("/", 1)[0]
            raise ConfigError(f"{self.path(table)} not found: run "
                              f"{PRODUCERS.get(family, 'the job that writes it')} first")
        self.reads[table] = snap.version
        return read_files(spark, snap)

    # -- writing -----------------------------------------------------------------------------
    def write_table(self, spark, df, table: str, run_id: str, job: str, *,
                    partition_by: Sequence[str] | None = None,
                    keys: Sequence[str] | None = None,
                    replace_where: dict[str, str] | None = None,
                    compression: str = "zstd", app_id: str | None = None,
                    app_version: int | None = None) -> CommitResult:
        """Write `df` with Spark into the run's folder of `table` and commit it in one
        transaction (see `commit_staged`). The schema is checked against the table's before
        any file is written."""
        spec = spec_of(table)
        partition_by = list(partition_by or (spec.partition_by if spec else ()))
        keys = list(keys if keys is not None else (spec.keys if spec else ()))
        arrow = spark_to_arrow(df.schema)
        snap = self.snapshot(table)
        if snap.exists:
            delta.check_schema(table, snap.arrow_schema, delta.table_schema(
                arrow, {c: arrow.field(c).type for c in partition_by}))
        target = self.run_dir(table, run_id)
        (df.write.mode("append").option("compression", compression)
         .partitionBy(*partition_by).parquet(target))
        return self.commit_staged(spark, table, run_id, job, partition_by=partition_by,
                                  keys=keys, replace_where=replace_where,
                                  spark_schema=df.schema, app_id=app_id,
                                  app_version=app_version)

    def commit_staged(self, spark, table: str, run_id: str, job: str, *,
                      partition_by: Sequence[str], keys: Sequence[str] = (),
                      partition_types: dict[str, Any] | None = None,
                      replace_where: dict[str, str] | None = None, spark_schema=None,
                      app_id: str | None = None, app_version: int | None = None
                      ) -> CommitResult:
        """Commit the Parquet files under `<table>/<run_id>/` in ONE transaction.

        Under the table's commit lock: rows whose `keys` already exist in the latest version
        (or appear twice among the staged files) are dropped from the staged files first, so
        a re-run or a concurrent run of the same input adds nothing twice; with
        `replace_where`, the files of that partition are removed in the same commit.
        """
        import pyarrow as pa

        uri = self.path(table)
        with delta.commit_lock(uri):
            staged = delta.scan_staged(uri, run_id, partition_by)
            snap = delta.snapshot(uri)
            removes: list[StagedFile] = []
            if replace_where and snap.exists:
                removes = _files_in(snap, replace_where)
            if not staged and not removes:
                delta.finish_stage(uri, run_id)
                result = CommitResult(table, None)
                self.commits[table] = result.as_dict()
                return result
            if staged:
                types = partition_types or {}
                schema = delta.table_schema(delta.file_schema(uri, staged[0]), {
                    c: types.get(c) or _partition_type(c, spark_schema) for c in partition_by})
                if snap.exists:  # before anything is committed, with the column named
                    delta.check_schema(table, snap.arrow_schema, schema)
            else:
                schema = snap.arrow_schema or pa.schema([])
            dropped = 0
            if keys and staged:
                scope = snap if not replace_where else _without(snap, removes)
                staged, dropped = drop_existing_keys(spark, uri, staged, scope, keys,
                                                     partition_by, schema)
            if not snap.exists and spark_schema is not None:
                delta.save_spark_schema(uri, _full_spark_schema(spark_schema, schema))
            crash_point(f"staged:{table}")
            staged = delta.publish(uri, staged, run_id)
            crash_point(f"published:{table}")
            version = delta.commit(uri, staged, schema=schema, partition_by=partition_by,
                                   run_id=run_id, job=job, removes=removes, app_id=app_id,
                                   app_version=app_version, table_name=table)
            crash_point(f"committed:{table}")
            delta.finish_stage(uri, run_id)
        result = CommitResult(table, version, len(staged), sum(f.num_records for f in staged),
                              len(removes), dropped)
        self.commits[table] = result.as_dict()
        return result

    # -- runs: leases, orphans, manifests -------------------------------------------------------
    def begin_run(self, run_id: str, job: str) -> None:
        """Mark a run alive (its staged files are not orphans) and remove dead runs' files."""
        if not is_local(self.root):
            return
        folder = os.path.join(self.root, RUNS_DIR, ACTIVE_DIR)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{run_id}.json"), "w") as fh:
            json.dump({"run_id": run_id, "job": job, "pid": os.getpid(),
                       "host": socket.gethostname(), "started": time.time()}, fh)
        self.remove_orphans()

    def end_run(self, run_id: str) -> None:
        if is_local(self.root):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.root, RUNS_DIR, ACTIVE_DIR, f"{run_id}.json"))
            _remove_tree(os.path.join(self.root, "_staging", run_id))

    def live_runs(self, stale_hours: float = STALE_RUN_HOURS) -> set[str]:
        """Runs holding a lease whose process is alive on this host (or that another host
        started less than `stale_hours` ago)."""
        folder = os.path.join(self.root, RUNS_DIR, ACTIVE_DIR)
        live = set()
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            try:
                with open(os.path.join(folder, name)) as fh:
                    lease = json.load(fh)
            except (OSError, ValueError):
                continue
            if lease_alive(lease, stale_hours):
                live.add(lease["run_id"])
        return live

    def remove_orphans(self) -> list[str]:
        """Delete files of dead runs that no commit references (a run killed before its
        commit), in every table folder, and dead runs' scratch folders."""
        if not is_local(self.root) or not os.path.isdir(self.root):
            return []
        live = self.live_runs()
        removed = []
        for uri in self._table_folders():
            dead = [r for r in delta.staged_runs(uri) if r not in live]
            removed += delta.remove_orphans(uri, dead)
        staging = os.path.join(self.root, "_staging")
        for d in os.listdir(staging) if os.path.isdir(staging) else []:
            if d not in live:
                _remove_tree(os.path.join(staging, d))
        return removed

    def _table_folders(self) -> list[str]:
        """Local folders that hold (or may hold) a Delta table: `<root>/<table>`, the tables
        of each configuration (`<root>/features/feature_set=<hash>`, ...) and
        `<root>/discoveries/<kind>`."""
        out = []
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if name.startswith(("_", ".")) or not os.path.isdir(path):
                continue
            out.append(path)
            if name == "discoveries" or name in CONFIG_LEVEL:
                out += [os.path.join(path, k) for k in sorted(os.listdir(path))
                        if os.path.isdir(os.path.join(path, k)) and not k.startswith("_")]
        return out

    def staging_path(self, run_id: str, name: str) -> str:
        """Scratch space of a run that is not table data (e.g. its file listing)."""
        return f"{self.root}/_staging/{run_id}/{name}"

    def write_manifest(self, spark, run_id: str, manifest: dict[str, Any]) -> str:
        """Write `_runs/<run_id>.json` (atomically on local lakes) and return its path."""
        path = f"{self.path(RUNS_DIR)}/{run_id}.json"
        write_text(path, json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return path

    def read_manifest(self, run_id: str) -> dict[str, Any]:
        """A run manifest of a local lake."""
        with open(f"{self.path(RUNS_DIR)}/{run_id}.json") as fh:
            return json.load(fh)


PRODUCERS = {"catalog": "`medspark ingest`", "pixels": "`medspark ingest`",
             "quarantine": "`medspark ingest`", "masks": "`medspark masks` or `medspark "
             "preprocess`", "preprocessed": "`medspark preprocess` (with the same imaging "
             "config)", "features": "`medspark features`", "predictions": "`medspark predict`"}


def lease_alive(lease: dict[str, Any], stale_hours: float = STALE_RUN_HOURS) -> bool:
    """A run lease is alive when its process runs on this host, or, from another host, when
    it is younger than `stale_hours`."""
    if time.time() - float(lease.get("started", 0)) > stale_hours * 3600:
        return False
    if lease.get("host") != socket.gethostname():
        return True
    return pid_alive(int(lease.get("pid", -1)))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        if fh.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie has exited
            return False
    return True


def read_text(path: str) -> str | None:
    """A small text file's content, or None when there is none."""
    if is_local(path):
        target = local_path(path)
        if not os.path.isfile(target):
            return None
        with open(target) as fh:
            return fh.read()
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(p) as fh:
        return fh.read().decode()


def write_text(path: str, text: str) -> None:
    """Write a small text file (see `write_bytes`)."""
    write_bytes(path, text.encode())


def write_bytes(path: str, data: bytes) -> None:
    """Write a small file: atomically (temp + rename) on a local lake, through pyarrow's
    filesystem otherwise."""
    if is_local(path):
        path = local_path(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(p) as out:
        out.write(data)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))  # the parent, once empty


def _files_in(snap: Snapshot, where: dict[str, str]) -> list[StagedFile]:
    """The snapshot's files in the partition `where` (as remove candidates)."""
    out = []
    root = snap.uri.rstrip("/") + "/"
    for path, values, n in zip(snap.files, snap.partition_values, snap.num_records,
                               strict=True):
        if all(values.get(k) == str(v) for k, v in where.items()):
            size = os.path.getsize(local_path(path)) if is_local(path) else 0
            out.append(StagedFile(path[len(root):], size, 0, values, n or 0))
    return out


def _without(snap: Snapshot, removes: list[StagedFile]) -> Snapshot:
    gone = {snap.uri.rstrip("/") + "/" + f.path for f in removes}
    keep = [i for i, f in enumerate(snap.files) if f not in gone]
    return Snapshot(snap.uri, snap.version, [snap.files[i] for i in keep], snap.partition_by,
                    snap.arrow_schema, [snap.partition_values[i] for i in keep],
                    [snap.num_records[i] for i in keep])


# ----------------------------------------------------------------------------- Spark bridge
def read_files(spark, snap: Snapshot):
    """The rows of a snapshot's files in Spark: exactly those files, partition columns typed
    as in the table (the Spark schema saved beside the log keeps ML vectors as vectors)."""
    from pyspark.sql.types import StructType

    saved = delta.load_spark_schema(snap.uri)
    schema = StructType.fromJson(json.loads(saved)) if saved else arrow_to_spark(
        snap.arrow_schema)
    if not snap.files:
        return spark.createDataFrame([], schema)
    return read_parquet_in_order(spark, [spark_path(f) for f in snap.files], base=snap.uri,
                                 schema=schema)


def read_parquet_in_order(spark, paths: list[str], *, base: str | None = None, schema=None):
    """Parquet files as one DataFrame, given to Spark in name order (`base`: the folder hive
    partition values are read from). Spark packs splits of equal length (every full split of
    a file over `spark.sql.files.maxPartitionBytes`) in the order it gets the files; a
    folder's listing order changes with the random id in each write's file names, and with it
    the rows each partition holds, which an MLlib forest depends on (it seeds its bootstrap
    per partition: a 2M-row forest changed from run to run)."""
    reader = spark.read if schema is None else spark.read.schema(schema)
    if base is not None:
        reader = reader.option("basePath", base)
    return reader.parquet(*sorted(paths))


def spark_path(path: str) -> str:
    return "file:" + path if path.startswith("/") else path


def spark_to_arrow(schema) -> pa.Schema:
    """Arrow schema of a Spark schema (UDTs, e.g. ML vectors, as their storage struct)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import StructType, UserDefinedType

    def storage(t):
        if isinstance(t, UserDefinedType):
            return storage(t.sqlType())
        if isinstance(t, StructType):
            return StructType([f.__class__(f.name, storage(f.dataType), f.nullable)
                               for f in t.fields])
        return t

    return pa.schema([pa.field(f.name, to_arrow_type(storage(f.dataType)), f.nullable)
                      for f in schema.fields])


def arrow_to_spark(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _partition_type(column: str, spark_schema) -> Any:
    import pyarrow as pa

    if spark_schema is not None and column in spark_schema.names:
        return spark_to_arrow(spark_schema).field(column).type
    return pa.date32() if column.endswith("_date") else pa.string()


def _full_spark_schema(spark_schema, arrow_schema: pa.Schema) -> str:
    """The Spark schema JSON in the table's column order (data columns, then partitions)."""
    from pyspark.sql.types import StructType

    by_name = {f.name: f for f in spark_schema.fields}
    fields = [by_name[n] for n in arrow_schema.names if n in by_name]
    missing = [n for n in arrow_schema.names if n not in by_name]
    if missing:
        extra = arrow_to_spark(__import__("pyarrow").schema(
            [arrow_schema.field(n) for n in missing]))
        fields += extra.fields
    return StructType(fields).json()


def drop_existing_keys(spark, table_uri: str, staged: list[StagedFile], snap: Snapshot,
                       keys: Sequence[str], partition_by: Sequence[str], schema: pa.Schema
                       ) -> tuple[list[StagedFile], int]:
    """Remove from the staged files every row whose key is in `snap` (only the partitions
    whose key-column values the staged files share are read) or repeats an earlier
    staged row; files left empty are deleted. Returns the files to commit and rows dropped.

    Up to DRIVER_DEDUPE_ROWS rows the key columns are compared on the driver with pyarrow
    (no Spark job); beyond, in Spark over the key columns only, and per-file row indexes are
    collected only for files that lose some but not all rows.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    root = table_uri.rstrip("/")
    common = [c for c in partition_by if c in keys]  # keys never repeat across these
    in_scope = []
    if snap.exists and snap.files:
        in_scope = snap.files_where([{c: f.partition_values[c] for c in common}
                                     for f in staged]) if common else snap.files
    at = {f: i for i, f in enumerate(snap.files)}
    scoped = Snapshot(snap.uri, snap.version, in_scope, snap.partition_by, snap.arrow_schema,
                      [snap.partition_values[at[f]] for f in in_scope])
    n_rows = sum(f.num_records for f in staged) + sum(
        snap.num_records[at[f]] or 0 for f in in_scope)
    if n_rows <= DRIVER_DEDUPE_ROWS:  # small: the key columns fit the driver, no Spark job
        return _apply_drops(table_uri, staged, _duplicate_rows_local(
            table_uri, staged, scoped, keys))
    rows = _read_staged(spark, table_uri, staged, schema)
    rows = rows.select(*keys, F.col("_metadata.file_path").alias("_file"),
                       F.col("_metadata.row_index").alias("_row"))
    first = Window.partitionBy(*keys).orderBy("_file", "_row")
    flagged = rows.withColumn("_dup", F.row_number().over(first) > 1)
    if in_scope:
        existing = read_files(spark, scoped).select(
            *[F.col(k).alias(f"_e_{k}") for k in keys]).distinct()
        match = None
        for k in keys:
            cond = F.col(k).eqNullSafe(F.col(f"_e_{k}"))
            match = cond if match is None else match & cond
        found = flagged.join(existing, match, "left_semi").select(
            "_file", "_row", F.lit(True).alias("_exists"))
        flagged = flagged.join(found, ["_file", "_row"], "left").withColumn(
            "_dup", F.col("_dup") | F.col("_exists").isNotNull())
    flagged = flagged.where("_dup").select("_file", "_row").cache()
    try:
        counts = {r["_file"]: r["n"] for r in
                  flagged.groupBy("_file").agg(F.count(F.lit(1)).alias("n")).collect()}
        by_path = {_norm(uri): uri for uri in counts}
        drops: dict[str, set[int] | int] = {}
        partial = {}
        for f in staged:
            uri = by_path.get(_norm(f"{root}/{f.path}"))
            n = counts.get(uri, 0) if uri else 0
            if n >= f.num_records:
                drops[f.path] = n
            elif n:
                partial[uri] = f.path
                drops[f.path] = set()
        if partial:
            for r in flagged.where(F.col("_file").isin(list(partial))).toLocalIterator():
                drops[partial[r["_file"]]].add(r["_row"])
        return _apply_drops(table_uri, staged, drops)
    finally:
        flagged.unpersist()


DRIVER_DEDUPE_ROWS = 200_000


def _duplicate_rows_local(table_uri: str, staged: list[StagedFile], scoped: Snapshot,
                          keys: Sequence[str]) -> dict[str, set[int] | int]:
    """`drop_existing_keys`' comparison with pyarrow on the driver (few rows): staged path ->
    row indexes to drop (or the row count when every row goes)."""
    import pyarrow.parquet as pq

    fs, root = delta._filesystem(table_uri)
    root = root.rstrip("/")

    def key_rows(path: str, values: dict[str, str | None], filesystem) -> list[tuple]:
        with (filesystem.open_input_file(path) if filesystem else open(path, "rb")) as fh:
            parquet = pq.ParquetFile(fh)  # one open: schema, row count and the key columns
            present = set(parquet.schema_arrow.names)
            data_keys = [k for k in keys if k not in values and k in present]
            table = parquet.read(columns=data_keys)
            n = parquet.metadata.num_rows
        # a key column an older file lacks (added to the table since) reads as null
        cols = {k: table.column(k).to_pylist() if k in data_keys else [None] * n
                for k in keys if k not in values}
        return [tuple(values[k] if k in values else cols[k][i] for k in keys)
                for i in range(n)]

    seen: set[tuple] = set()
    for path, values in zip(scoped.files, scoped.partition_values, strict=True):
        seen.update(key_rows(local_path(path) if is_local(path) else path, values,
                             None if is_local(path) else fs))
    drops: dict[str, set[int] | int] = {}
    for f in staged:
        rows = set()
        for i, k in enumerate(key_rows(f"{root}/{f.path}", f.partition_values, fs)):
            if k in seen:
                rows.add(i)
            seen.add(k)
        if rows:
            drops[f.path] = f.num_records if len(rows) >= f.num_records else rows
    return drops


def _apply_drops(table_uri: str, staged: list[StagedFile],
                 drops: dict[str, set[int] | int]) -> tuple[list[StagedFile], int]:
    """Delete staged files that lose every row, rewrite those that lose some."""
    keep, dropped = [], 0
    for f in staged:
        gone = drops.get(f.path)
        if not gone:
            keep.append(f)
        elif isinstance(gone, int):
            dropped += f.num_records
            delta.delete_files(table_uri, [f.path])
        else:
            dropped += len(gone)
            keep.append(_rewrite_without(table_uri, f, gone))
    return sorted(keep, key=lambda f: f.path), dropped


def _read_staged(spark, table_uri: str, staged: list[StagedFile], schema: pa.Schema):
    """Staged files in Spark with their partition columns typed as the table's (read
    relative to the run folder)."""
    root = table_uri.rstrip("/")
    run_dir = "/".join(staged[0].path.split("/")[:2])  # _stage/<run_id>
    return (spark.read.schema(arrow_to_spark(schema))
            .option("basePath", spark_path(f"{root}/{run_dir}"))
            .parquet(*[spark_path(f"{root}/{f.path}") for f in staged]))


def _norm(uri: str) -> str:
    from urllib.parse import unquote

    return unquote(local_path(uri)) if uri.startswith("file:") else uri


def _rewrite_without(table_uri: str, f: StagedFile, rows: set[int]) -> StagedFile:
    """Rewrite a staged file without the given row indexes (same folder, new name)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, root = delta._filesystem(table_uri)
    src = f"{root.rstrip('/')}/{f.path}"
    table = pq.read_table(src, filesystem=fs)
    mask = np.ones(table.num_rows, dtype=bool)
    mask[list(rows)] = False
    kept = table.filter(pa.array(mask))
    rel = f.path.removesuffix(".parquet") + "-k.parquet"
    pq.write_table(kept, f"{root.rstrip('/')}/{rel}", filesystem=fs, compression="zstd")
    fs.delete_file(src)
    info = fs.get_file_info(f"{root.rstrip('/')}/{rel}")
    return StagedFile(rel, info.size, int(time.time() * 1000), f.partition_values,
                      kept.num_rows)
