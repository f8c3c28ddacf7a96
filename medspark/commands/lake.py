"""`medspark lake history|optimize|vacuum|convert`: look after the lake's Delta tables.

    medspark lake history  --lake DIR TABLE [--limit N]     commits, newest first
    medspark lake optimize --lake DIR [--table T ...]       compact small files per partition
    medspark lake vacuum   --lake DIR --retain-hours H      delete files no version within H
                           [--dry-run] [--force]            hours references
    medspark lake convert  --lake DIR                       a Parquet lake -> Delta, in place

A table is named as in the lake: `catalog`, `pixels`, `quarantine`, or a configuration's table
such as `features/feature_set=<hash>`, `masks/source=rtstruct`, `predictions/model=<id>`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from typing import Any

from medspark.config import ConfigError

log = logging.getLogger(__name__)
MIN_RETAIN_HOURS = 1.0


def add_parser(subparsers) -> None:
    lake = subparsers.add_parser("lake", help="history, optimize, vacuum or convert the "
                                              "lake's Delta tables")
    sub = lake.add_subparsers(dest="lake_command", required=True)
    history = sub.add_parser("history", help="commits of one table, newest first")
    history.add_argument("table", help="catalog, pixels, features/feature_set=<hash>, ...")
    history.add_argument("--limit", type=int, default=50)
    optimize = sub.add_parser("optimize", help="compact small files per partition")
    optimize.add_argument("--table", dest="tables", action="append", default=[],
                          help="a table (repeatable); default: every table")
    vacuum = sub.add_parser("vacuum", help="delete files no version within --retain-hours "
                                           "references")
    vacuum.add_argument("--retain-hours", type=float, required=True,
                        help="keep every file a version of the last H hours references "
                             "(readers and time travel need them)")
    vacuum.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    vacuum.add_argument("--force", action="store_true",
                        help=f"allow --retain-hours below {MIN_RETAIN_HOURS:g}, or while "
                             "other runs hold the lake")
    sub.add_parser("convert", help="turn a lake of Parquet folders (medspark <= 0.1) into "
                                   "Delta tables, in place")
    for parser in (history, optimize, vacuum, sub.choices["convert"]):
        parser.add_argument("--lake", required=True, help="lake root directory")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from medspark.lake import Lake

    lake = Lake(args.lake)
    if not os.path.isdir(lake.root):
        raise ConfigError(f"lake not found: {args.lake}")
    if args.lake_command == "convert":  # Spark reads the files' own schemas (ML vectors)
        from medspark.config import load_settings
        from medspark.session import build_session

        args.spark = build_session(load_settings(None).spark)
    result = COMMANDS[args.lake_command](lake, args)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


def all_tables(lake) -> list[str]:
    """Every Delta table of the lake, by name."""
    from medspark import delta

    root = lake.root
    names = []
    for folder in lake._table_folders():
        if delta.table_exists(folder):
            names.append(os.path.relpath(folder, root))
    return names


def _history(lake, args) -> list[dict[str, Any]]:
    from medspark import delta

    if not lake.exists(args.table):
        raise ConfigError(f"{lake.path(args.table)} is not a Delta table; tables: "
                          f"{', '.join(all_tables(lake))}")
    rows = delta.history(lake.path(args.table), args.limit)
    if not args.json:
        print(f"{'version':>7}  {'timestamp':<32} {'operation':<14} {'job':<10} run_id")
        for r in rows:
            print(f"{r['version']:>7}  {r['timestamp'] or '':<32} {r['operation'] or '':<14} "
                  f"{r['job'] or '':<10} {r['run_id'] or ''}")
    return rows


def _optimize(lake, args) -> dict[str, Any]:
    from medspark import delta

    tables = args.tables or all_tables(lake)
    out = {}
    for table in tables:
        if not lake.exists(table):
            raise ConfigError(f"{lake.path(table)} is not a Delta table")
        with delta.commit_lock(lake.path(table)):
            metrics = delta.optimize(lake.path(table))
        out[table] = {k: metrics.get(k) for k in ("numFilesAdded", "numFilesRemoved",
                                                  "partitionsOptimized")}
        if not args.json:
            print(f"{table}: {out[table]}")
    return out


def _vacuum(lake, args) -> dict[str, Any]:
    from medspark import delta

    if args.retain_hours < MIN_RETAIN_HOURS and not args.force:
        raise ConfigError(f"--retain-hours {args.retain_hours:g} is below "
                          f"{MIN_RETAIN_HOURS:g}: a reader may still be reading an older "
                          "version; add --force if none is")
    live = lake.live_runs()
    if live and not args.force:
        raise ConfigError(f"runs hold the lake ({', '.join(sorted(live))}): vacuum when they "
                          "have finished, or add --force")
    lake.remove_orphans()
    out = {}
    for table in all_tables(lake):
        with delta.commit_lock(lake.path(table)):  # never between a publish and its commit
            removed = delta.vacuum(lake.path(table), int(args.retain_hours), args.dry_run)
        out[table] = len(removed)
        if not args.json:
            verb = "would delete" if args.dry_run else "deleted"
            print(f"{table}: {verb} {len(removed)} file(s)")
    return out


def _convert(lake, args) -> dict[str, Any]:
    """Convert every Parquet table folder of an old lake in place (predictions tables, whose
    columns changed, are rewritten)."""
    import pyarrow as pa

    from medspark import delta
    from medspark.lake import CONFIG_LEVEL

    date = {"ingest_date": pa.date32()}
    todo: list[tuple[str, dict]] = []
    for name in ("catalog", "pixels", "quarantine"):
        todo.append((name, date))
    for family, level in CONFIG_LEVEL.items():
        folder = lake.path(family)
        for sub in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if sub.startswith(f"{level}="):
                part = {"run_date": pa.date32()} if family.startswith("predictions") else date
                todo.append((f"{family}/{sub}", part))
    out: dict[str, Any] = {}
    for table, partitions in todo:
        path = lake.path(table)
        if not os.path.isdir(path) or delta.table_exists(path):
            continue
        if table.startswith("predictions"):
            version = _rewrite_predictions(path, table)
        else:
            version = delta.convert(path, partitions)
            version = _add_new_columns(path, table.split("/", 1)[0]) or version
        _save_spark_schema(args.spark, path, partitions)
        out[table] = version
        if not args.json:
            print(f"{table}: Delta table, version {version}")
    return out


# columns the writers added since medspark 0.1 (null in the converted rows)
NEW_COLUMNS = {
    "catalog": {"source_version": "integer"},
    "masks": {"roi_name": "string", "rtstruct_id": "string"},
    "preprocessed": {"source_version": "integer"},
    "features": {"source_version": "integer", "feature_warnings": "array<string>",
                 "roi_name": "string"},
}


def _add_new_columns(path: str, family: str) -> int | None:
    """Evolve a converted table's schema to today's writers' (one commit); the new columns
    read as null in the old rows."""
    from deltalake import DeltaTable
    from deltalake.schema import ArrayType, Field, PrimitiveType

    table = DeltaTable(path)
    have = {f.name for f in table.schema().fields}
    add = [Field(name, ArrayType(PrimitiveType("string")) if kind.startswith("array")
                 else PrimitiveType(kind), nullable=True)
           for name, kind in NEW_COLUMNS.get(family, {}).items() if name not in have]
    if not add:
        return None
    table.alter.add_columns(add)
    return DeltaTable(path).version()


def _save_spark_schema(spark, path: str, partitions: dict) -> None:
    """Keep the Spark schema of the converted files (an ML vector column stays a vector)."""
    import pyarrow as pa
    from pyspark.sql.types import StructType

    from medspark import delta
    from medspark.lake import arrow_to_spark, spark_path

    snap = delta.snapshot(path)
    if not snap.files:
        return
    data = spark.read.parquet(spark_path(snap.files[0])).schema  # keeps ML vector types
    fields = [f for f in data.fields if f.name not in partitions]
    have = {f.name for f in fields}
    extra = [f for f in snap.arrow_schema if f.name not in have and f.name not in partitions]
    extra += [pa.field(k, v) for k, v in partitions.items()]
    fields += list(arrow_to_spark(pa.schema(extra)).fields)
    delta.save_spark_schema(path, StructType(fields).json())


def _rewrite_predictions(path: str, table: str) -> int:
    """Old predictions/rejected folders lack `source` (and rejected named its key column
    after the model's key): rewrite them as Delta tables with today's columns."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from deltalake import write_deltalake

    data = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    if "source" not in data.column_names:
        data = data.append_column("source", pa.array(["unknown"] * data.num_rows))
    if table.startswith("predictions_rejected/") and "key" not in data.column_names:
        key = [c for c in data.column_names if c not in ("step", "reason", "run_date",
                                                         "source")][0]
        data = data.set_column(data.column_names.index(key), "key",
                               data.column(key).cast(pa.string()))
    if "run_date" in data.column_names:
        data = data.set_column(data.column_names.index("run_date"), "run_date",
                               data.column("run_date").cast(pa.string()).cast(pa.date32()))
    old = path.rstrip("/") + ".parquet-old"
    os.rename(path, old)
    write_deltalake(path, data, partition_by=["run_date"])
    shutil.rmtree(old)
    return 0


COMMANDS = {"history": _history, "optimize": _optimize, "vacuum": _vacuum,
            "convert": _convert}
