"""Delta Lake tables through delta-rs: snapshots, one-commit publishing, history, maintenance.

Pure Python (deltalake + pyarrow, no Spark). Every lake table is a Delta table. A run's writers
(Python workers or Spark's writer) put its Parquet files under `<table>/_stage/<run_id>/<partition
dirs>/`; the driver moves them into the partition folders as `part-<run_id>-...` (`publish`) and
commits all of them in ONE transaction (`commit`): until then no Delta reader sees them. A run
that dies first leaves only files no commit references, which `remove_orphans` deletes once the
run is known to be dead. Readers list a snapshot's files from the log (`snapshot`), never the
folder.

Commits carry `medspark.run_id` and `medspark.job` in their commit info, and optionally a Delta
application transaction (`app_id`, `app_version`), so a resumed run can ask whether its commit
already landed (`committed_version`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from medspark.uris import is_local as _is_local
from medspark.uris import local_path as _local

log = logging.getLogger(__name__)
SPARK_SCHEMA_FILE = "_medspark_spark_schema.json"
COMMIT_LOCK_FILE = "_medspark_commit.lock"
STAGE_DIR = "_stage"
RUN_KEY, JOB_KEY = "medspark.run_id", "medspark.job"


class SchemaMismatchError(ValueError):
    """A run's rows do not match the table's schema (raised before anything is written)."""


class CommitConflictError(RuntimeError):
    """Another writer changed the same rows (or files) first; nothing was committed."""


def table_exists(uri: str) -> bool:
    """True when `uri` holds a Delta table (a `_delta_log` with a commit)."""
    from deltalake import DeltaTable

    if _is_local(uri) and not os.path.isdir(os.path.join(_local(uri), "_delta_log")):
        return False
    return DeltaTable.is_deltatable(uri)


# ------------------------------------------------------------------------------- snapshots
@dataclass(frozen=True)
class Snapshot:
    """One version of a table: its files (absolute paths/URIs), schema and partitioning.
    `version` is None when the table does not exist yet (no files)."""

    uri: str
    version: int | None
    files: list[str] = field(default_factory=list)
    partition_by: list[str] = field(default_factory=list)
    arrow_schema: pa.Schema | None = None
    partition_values: list[dict[str, str | None]] = field(default_factory=list)
    num_records: list[int | None] = field(default_factory=list)

    @property
    def exists(self) -> bool:
        return self.version is not None

    @property
    def rows(self) -> int:
        """Rows in the snapshot, from the log's statistics."""
        return sum(n or 0 for n in self.num_records)

    def files_where(self, partitions: Sequence[dict[str, str | None]]) -> list[str]:
        """The files whose partition values equal one of `partitions` (on the keys given)."""
        wanted = [tuple(sorted(p.items())) for p in partitions]
        out = []
        for path, values in zip(self.files, self.partition_values, strict=True):
            for want in wanted:
                if all(values.get(k) == v for k, v in want):
                    out.append(path)
                    break
        return out


def load_table(uri: str, version: int | str | dt.datetime | None = None):
    """A `DeltaTable` at its latest version, a version number or the version current at a
    timestamp (ISO text or datetime)."""
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    if version is not None:
        if isinstance(version, str) and not version.isdigit():
            version = dt.datetime.fromisoformat(version)
            if version.tzinfo is None:
                version = version.replace(tzinfo=dt.UTC)
        elif isinstance(version, str):
            version = int(version)
        table.load_as_version(version)
    return table


def snapshot(uri: str, version: int | str | dt.datetime | None = None) -> Snapshot:
    """The files, schema and partitioning of a table version (latest by default)."""
    if not table_exists(uri):
        if version is not None:
            raise FileNotFoundError(f"{uri} is not a Delta table (no version {version})")
        return Snapshot(uri, None)
    table = load_table(uri, version)
    actions = pa.table(table.get_add_actions(flatten=True))
    partition_by = list(table.metadata().partition_columns)
    root = uri.rstrip("/")
    paths = [unquote(p) for p in actions.column("path").to_pylist()]
    values = []
    for i in range(actions.num_rows):
        row = {}
        for col in partition_by:
            v = actions.column(f"partition.{col}")[i].as_py()
            row[col] = None if v is None else (v.isoformat() if isinstance(v, dt.date) else str(v))
        values.append(row)
    return Snapshot(
        uri=uri,
        version=table.version(),
        files=[f"{root}/{p}" for p in paths],
        partition_by=partition_by,
        arrow_schema=pa.schema(table.schema()),
        partition_values=values,
        num_records=actions.column("num_records").to_pylist(),
    )


def latest_version(uri: str) -> int | None:
    return load_table(uri).version() if table_exists(uri) else None


# ---------------------------------------------------------------------------- staged files
@dataclass(frozen=True)
class StagedFile:
    """A Parquet file a run wrote into its table folder, not yet committed."""

    path: str  # relative to the table root
    size: int
    modification_time: int  # ms
    partition_values: dict[str, str | None]
    num_records: int

    def add_action(self):
        from deltalake.transaction import AddAction

        return AddAction(path=self.path, size=self.size, partition_values=self.partition_values,
                         modification_time=self.modification_time, data_change=True,
                         stats=json.dumps({"numRecords": self.num_records}))

    def remove_action(self):
        from deltalake.transaction import RemoveAction

        return RemoveAction(path=self.path, data_change=True,
                            deletion_timestamp=int(time.time() * 1000), size=self.size,
                            partition_values=self.partition_values)


def _partition_values(relpath: str, partition_by: Sequence[str]) -> dict[str, str | None]:
    """Hive-style `k=v` folders of a relative path -> partition values (Spark's null folder
    name `__HIVE_DEFAULT_PARTITION__` -> None)."""
    found = {}
    for part in relpath.split("/")[:-1]:
        if "=" in part:
            k, v = part.split("=", 1)
            found[unquote(k)] = None if v == "__HIVE_DEFAULT_PARTITION__" else unquote(v)
    missing = [c for c in partition_by if c not in found]
    if missing:
        raise ValueError(f"staged file {relpath} lacks partition folder(s) {missing}")
    return {c: found[c] for c in partition_by}


def _filesystem(uri: str):
    import pyarrow.fs as pafs

    if _is_local(uri):
        return pafs.LocalFileSystem(), _local(uri)
    return pafs.FileSystem.from_uri(uri)


def scan_staged(table_uri: str, run_id: str, partition_by: Sequence[str]) -> list[StagedFile]:
    """The Parquet files a run staged under `<table>/_stage/<run_id>/` (hidden names, Spark's
    markers and checksums skipped), with sizes, partition values from their folders and row
    counts from their footers."""
    import pyarrow.fs as pafs

    fs, root = _filesystem(table_uri)
    base = f"{root.rstrip('/')}/{stage_dir(run_id)}"
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        return []
    out = []
    for entry in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        name = entry.base_name
        if entry.type != pafs.FileType.File or name.startswith((".", "_")) \
                or not name.endswith(".parquet"):
            continue
        rel = entry.path[len(root.rstrip("/")) + 1:]
        meta = pq.read_metadata(entry.path, filesystem=fs)
        out.append(StagedFile(path=rel, size=entry.size,
                              modification_time=int(entry.mtime.timestamp() * 1000)
                              if entry.mtime else int(time.time() * 1000),
                              partition_values=_partition_values(rel, partition_by),
                              num_records=meta.num_rows))
    return sorted(out, key=lambda f: f.path)


def delete_files(table_uri: str, relpaths: Sequence[str]) -> None:
    fs, root = _filesystem(table_uri)
    for rel in relpaths:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_file(f"{root.rstrip('/')}/{rel}")


# --------------------------------------------------------------------------------- schemas
def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Type equality up to nullability, field names of lists and timestamp zones."""
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return True
    if pa.types.is_large_string(a) or pa.types.is_string_view(a):
        a = pa.string()
    if pa.types.is_large_string(b) or pa.types.is_string_view(b):
        b = pa.string()
    if pa.types.is_large_binary(a) or pa.types.is_binary_view(a):
        a = pa.binary()
    if pa.types.is_large_binary(b) or pa.types.is_binary_view(b):
        b = pa.binary()
    if pa.types.is_list(a) or pa.types.is_large_list(a):
        return (pa.types.is_list(b) or pa.types.is_large_list(b)) and _same_type(
            a.value_type, b.value_type)
    if pa.types.is_map(a):
        return pa.types.is_map(b) and _same_type(a.key_type, b.key_type) and _same_type(
            a.item_type, b.item_type)
    if pa.types.is_struct(a):
        return pa.types.is_struct(b) and a.num_fields == b.num_fields and all(
            a.field(i).name == b.field(i).name and _same_type(a.field(i).type, b.field(i).type)
            for i in range(a.num_fields))
    return a.equals(b)


def check_schema(table: str, expected: pa.Schema, found: pa.Schema) -> None:
    """SchemaMismatchError naming the first column that differs (names and types; column
    order and nullability are free)."""
    want = {f.name: f.type for f in expected}
    got = {f.name: f.type for f in found}
    for name, typ in got.items():
        if name not in want:
            raise SchemaMismatchError(
                f"{table}: column {name!r} is not in the table's schema "
                f"(table columns: {', '.join(want)})")
        if not _same_type(want[name], typ):
            raise SchemaMismatchError(
                f"{table}: column {name!r} is {typ} in this run but {want[name]} in the table")
    missing = [n for n in want if n not in got]
    if missing:
        raise SchemaMismatchError(f"{table}: this run lacks column(s) {missing} of the table")


def table_schema(data_schema: pa.Schema, partition_types: dict[str, pa.DataType]) -> pa.Schema:
    """The Delta schema of a table: its data files' columns plus the partition columns, with
    types Delta accepts (no unsigned or view types)."""
    fields = [pa.field(f.name, _delta_type(f.type)) for f in data_schema
              if f.name not in partition_types]
    fields += [pa.field(name, typ) for name, typ in partition_types.items()]
    return pa.schema(fields)


def _delta_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC") if t.tz else pa.timestamp("us")
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(pa.field("element", _delta_type(t.value_type)))
    if pa.types.is_map(t):
        return pa.map_(_delta_type(t.key_type), _delta_type(t.item_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _delta_type(f.type)) for f in t])
    return t


def file_schema(table_uri: str, staged: StagedFile) -> pa.Schema:
    fs, root = _filesystem(table_uri)
    return pq.read_schema(f"{root.rstrip('/')}/{staged.path}", filesystem=fs)


# -------------------------------------------------------------------------------- committing
@contextlib.contextmanager
def commit_lock(table_uri: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Serialise medspark's commits to one local table (an advisory `flock`), so the check for
    rows another run committed meanwhile and the commit itself happen as one step. Object
    stores get no lock: delta-rs' optimistic concurrency still keeps every commit, but two runs
    adding the same rows at the same moment could both add them."""
    if not _is_local(table_uri):
        yield
        return
    root = _local(table_uri)
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, COMMIT_LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True)
class CommitResult:
    """What one commit published (version None: nothing to commit)."""

    table: str
    version: int | None
    files: int = 0
    rows: int = 0
    removed_files: int = 0
    duplicates_dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "files": self.files, "rows": self.rows,
                "removed_files": self.removed_files,
                "duplicates_dropped": self.duplicates_dropped}


def commit(table_uri: str, files: Sequence[StagedFile], *, schema: pa.Schema,
           partition_by: Sequence[str], run_id: str, job: str,
           removes: Sequence[StagedFile] = (), app_id: str | None = None,
           app_version: int | None = None, table_name: str | None = None,
           extra: dict[str, Any] | None = None) -> int | None:
    """Commit `files` (and `removes`) to the table in ONE transaction; create the table with
    `schema` on first use. Returns the version committed (None when there was nothing)."""
    from deltalake import DeltaTable, Schema
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import (
        CommitProperties,
        Transaction,
        create_table_with_add_actions,
    )

    if not files and not removes:
        return None
    name = table_name or table_uri
    meta = {RUN_KEY: run_id, JOB_KEY: job, **(extra or {})}
    txns = [Transaction(app_id, app_version)] if app_id is not None else None
    props = CommitProperties(custom_metadata=meta, max_commit_retries=50,
                             app_transactions=txns)
    adds = [f.add_action() for f in files]
    try:
        if not table_exists(table_uri):
            if removes:
                raise CommitConflictError(f"{name}: cannot remove files from a new table")
            create_table_with_add_actions(table_uri, Schema.from_arrow(schema), adds,
                                          mode="append", partition_by=list(partition_by),
                                          name=table_name, commit_properties=props)
        else:
            table = DeltaTable(table_uri)
            check_schema(name, pa.schema(table.schema()), schema)
            table.create_write_transaction(
                adds + [f.remove_action() for f in removes], mode="append",
                schema=table.schema(), partition_by=list(table.metadata().partition_columns),
                commit_properties=props)
    except CommitFailedError as e:
        raise CommitConflictError(
            f"{name}: another run changed the same rows first; nothing was committed by "
            f"{run_id}. Re-run to pick up what is left. ({str(e).splitlines()[0]})") from None
    version = committed_version(table_uri, run_id)
    log.info("%s: committed version %s (%d file(s) added, %d removed) for %s", name, version,
             len(files), len(removes), run_id)
    return version


def committed_version(table_uri: str, run_id: str, limit: int = 200) -> int | None:
    """The version a run committed to a table (from the commit info), or None."""
    if not table_exists(table_uri):
        return None
    for entry in load_table(table_uri).history(limit):
        if entry.get(RUN_KEY) == run_id:
            return int(entry["version"])
    return None


def app_version(table_uri: str, app_id: str) -> int | None:
    """The last version number an application transaction recorded (None: never)."""
    if not table_exists(table_uri):
        return None
    return load_table(table_uri).transaction_version(app_id)


def history(table_uri: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Commits newest first: version, timestamp, operation, run id, job, rows/files added."""
    if not table_exists(table_uri):
        return []
    out = []
    for entry in load_table(table_uri).history(limit):
        metrics = entry.get("operationMetrics") or {}
        out.append({
            "version": entry.get("version"),
            "timestamp": dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.UTC)
            .isoformat() if entry.get("timestamp") else None,
            "operation": entry.get("operation"),
            "run_id": entry.get(RUN_KEY),
            "job": entry.get(JOB_KEY),
            "metrics": metrics,
        })
    return out


def files_added_since(table_uri: str, version: int | None) -> Snapshot:
    """The latest snapshot restricted to files that were not in `version` (all when None)."""
    latest = snapshot(table_uri)
    if version is None or not latest.exists or latest.version == version:
        return latest if version is None else Snapshot(table_uri, latest.version)
    before = set(snapshot(table_uri, version).files)
    keep = [i for i, f in enumerate(latest.files) if f not in before]
    return Snapshot(table_uri, latest.version, [latest.files[i] for i in keep],
                    latest.partition_by, latest.arrow_schema,
                    [latest.partition_values[i] for i in keep],
                    [latest.num_records[i] for i in keep])


# ---------------------------------------------------------------------------- spark schema
def save_spark_schema(table_uri: str, schema_json: str) -> None:
    """Keep the Spark schema (with UDTs such as ML vectors, which Delta cannot express) beside
    the log; readers in Spark use it so a vector column reads back as a vector."""
    fs, root = _filesystem(table_uri)
    path = f"{root.rstrip('/')}/{SPARK_SCHEMA_FILE}"
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(schema_json.encode())


def load_spark_schema(table_uri: str) -> str | None:
    fs, root = _filesystem(table_uri)
    try:
        with fs.open_input_stream(f"{root.rstrip('/')}/{SPARK_SCHEMA_FILE}") as src:
            return src.read().decode()
    except (FileNotFoundError, OSError):
        return None


# ------------------------------------------------------------------------------ maintenance
def stage_dir(run_id: str) -> str:
    """Where a run's writers put a table's files before the driver publishes them (relative
    to the table root; hidden from Delta and Spark readers)."""
    return f"{STAGE_DIR}/{run_id}"


def publish(table_uri: str, staged: Sequence[StagedFile], run_id: str) -> list[StagedFile]:
    """Move staged files into their partition folders as `part-<run_id>-<name>` (a rename on
    local and HDFS lakes), after journaling the target names so that a run killed before its
    commit can be cleaned up exactly. Returns the files at their new paths."""
    fs, root = _filesystem(table_uri)
    root = root.rstrip("/")
    moves = []
    for f in staged:
        parts = f.path.split("/")[2:]  # drop _stage/<run_id>
        name = parts[-1]
        target = "/".join([*parts[:-1], name if name.startswith(f"part-{run_id}-")
                           else f"part-{run_id}-{name.removeprefix('part-')}"])
        moves.append((f, target))
    journal = f"{root}/{STAGE_DIR}/{run_id}.moved.json"
    with fs.open_output_stream(journal) as out:
        out.write(json.dumps([t for _, t in moves]).encode())
    out_files = []
    for f, target in moves:
        fs.create_dir(f"{root}/{target.rsplit('/', 1)[0]}", recursive=True)
        fs.move(f"{root}/{f.path}", f"{root}/{target}")
        out_files.append(StagedFile(target, f.size, f.modification_time, f.partition_values,
                                    f.num_records))
    return out_files


def finish_stage(table_uri: str, run_id: str) -> None:
    """Drop a run's (now empty) stage folder and its journal after its commit."""
    fs, root = _filesystem(table_uri)
    base = f"{root.rstrip('/')}/{STAGE_DIR}/{run_id}"
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.delete_dir(base)
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.delete_file(f"{base}.moved.json")


def staged_runs(table_uri: str) -> list[str]:
    """Run ids with a stage folder or journal in a local table."""
    folder = os.path.join(_local(table_uri), STAGE_DIR)
    names = os.listdir(folder) if _is_local(table_uri) and os.path.isdir(folder) else []
    return sorted({n.removesuffix(".moved.json") for n in names})


def remove_orphans(table_uri: str, dead_runs: Sequence[str]) -> list[str]:
    """Delete what runs known to be dead left in a local table: their stage folders, and the
    published files their commit never referenced (a run killed between publishing and
    committing). Returns the files deleted."""
    if not _is_local(table_uri) or not dead_runs:
        return []
    root = _local(table_uri)
    removed: list[str] = []
    for run_id in dead_runs:
        base = os.path.join(root, STAGE_DIR, run_id)
        for folder, _, names in os.walk(base):
            removed += [os.path.join(folder, n) for n in names]
        shutil.rmtree(base, ignore_errors=True)
        journal = f"{base}.moved.json"
        if not os.path.exists(journal):
            continue
        with open(journal) as fh:
            moved = json.load(fh)
        version = committed_version(table_uri, run_id)
        referenced = set()
        if version is not None:
            referenced = {os.path.abspath(_local(f)) for f in snapshot(table_uri, version).files}
        for rel in moved:
            path = os.path.abspath(os.path.join(root, rel))
            if path not in referenced and os.path.exists(path):
                os.remove(path)
                removed.append(path)
        os.remove(journal)
    if removed:
        log.info("%s: removed %d file(s) of dead runs that no commit references", table_uri,
                 len(removed))
    return removed


def vacuum(table_uri: str, retain_hours: int, dry_run: bool = False) -> list[str]:
    """Delete files no version within `retain_hours` references (removed by later commits, or
    never committed), Delta's VACUUM in full mode."""
    if not table_exists(table_uri):
        return []
    return load_table(table_uri).vacuum(retention_hours=retain_hours, dry_run=dry_run,
                                        enforce_retention_duration=False, full=True)


def optimize(table_uri: str, partition_filters: list[tuple[str, str, Any]] | None = None,
             target_size: int | None = None) -> dict[str, Any]:
    """Compact small files per partition (one commit; the old files stay until vacuum)."""
    if not table_exists(table_uri):
        return {}
    return load_table(table_uri).optimize.compact(partition_filters=partition_filters,
                                                  target_size=target_size)


def convert(table_uri: str, partition_types: dict[str, pa.DataType]) -> int:
    """Turn a folder of hive-partitioned Parquet files into a Delta table in place."""
    from deltalake import Schema, convert_to_deltalake

    schema = Schema.from_arrow(pa.schema(list(partition_types.items()))) \
        if partition_types else None
    convert_to_deltalake(table_uri, partition_by=schema,
                         partition_strategy="hive" if partition_types else None)
    return load_table(table_uri).version()
