"""A small table read, split and staged by one Spark task instead of Spark SQL.

For a `--table` that fits one task (`train.sklearn_max_rows`, `train.task_memory_mb`), the train
job's work before the first fit (read, count, encode the label, assign groups to the held-out
split and folds, fingerprint, write the staged rows) is the same few numpy passes over one
Arrow table, which a task does in a second or two; in Spark SQL it is several jobs, whose
planning and code generation in a fresh JVM cost the run ~15 s at 100k x 100 (more than the
work itself). `medspark.models.hash_split.split_table` computes what `prepare` and
`assign_folds` compute, with Spark's hash, so the rows, folds, counts and model id are those of
the Spark path (`train.prepare: spark` forces it; tests compare both).

`plan_task_split` decides on the driver from the files' footers (no rows read) and says why not;
`split_in_task` runs it and gives the driver only counts, classes and the fingerprint; the rows
stay in the staged files every later step reads. What the task finds it cannot follow (files
whose schemas differ, a null key) raises `SplitDeclined`, and the run uses Spark SQL.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

# only light imports at the top: a Python worker's first task imports this module, and that
# task is on the run's critical path (medspark.config alone loads scipy, scikit-image, ...)
from medspark.models.folder import Folder
from medspark.models.hash_split import SplitError, SplitSpec, split_table
from medspark.models.spark_hash import is_hashable

log = logging.getLogger(__name__)
ROWS_FILE = "part-{:05d}.parquet"
GROUPS_FILE = "groups.parquet"  # not "_...": Spark skips such files even when named


class SplitDeclined(Exception):
    """The task could not read or split the table as Spark SQL would (its message says
    why): the run goes through Spark SQL instead."""


@dataclass(frozen=True)
class TaskSplit:
    """A table the driver decided to split in a task: its files and what to do with them."""

    where: str                     # as given (`--table`)
    table: Folder
    files: list[str]               # paths on `table.fs`, sorted
    spec: SplitSpec
    rows: int                      # from the footers


@dataclass
class SplitResult:
    """What the task found: counts, classes, split summary cells and the fingerprint."""

    counts: dict[str, int]
    labels: list[Any] | None
    cells: list[dict[str, Any]]
    fingerprint: dict[str, int]
    staged: Any                    # StagedRows
    groups_file: str
    balance: dict[str, dict[str, int]] | None
    schema: Any = None             # the staged rows' Spark schema (None: read it from files)


def _integer(kind: pa.DataType) -> bool:
    # Spark reads uint64 as decimal(20,0): not an integer there
    return pa.types.is_integer(kind) and not pa.types.is_uint64(kind)


def _numeric(kind: pa.DataType) -> bool:
    return _integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind)


def _text_or_integer(kind: pa.DataType) -> bool:
    """Cast to string the same way by Arrow and Spark."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or _integer(kind)


def numeric_columns(schema: pa.Schema) -> list[str] | None:
    """The columns Spark would read as numeric, in order; None when a column's type is one
    whose Spark reading this path does not follow (decimals, uint64, half floats)."""
    odd = [f.name for f in schema if pa.types.is_decimal(f.type) or pa.types.is_uint64(f.type)
           or pa.types.is_float16(f.type)]
    return None if odd else [f.name for f in schema if _numeric(f.type)]


def plan_task_split(table: str, folder: Folder, dataset: Any, spec: SplitSpec, max_rows: int,
                    memory_mb: int, bytes_per_value: int) -> TaskSplit | str:
    """The task split of `table` (at `folder`, opened as the pyarrow `dataset`), or why it
    goes through Spark SQL instead."""
    files = sorted(dataset.files)
    base = folder.path.rstrip("/") + "/"
    if any("/" in f[len(base):] for f in files if f.startswith(base)):
        return "the table has partition folders"
    schema = dataset.schema
    need = [*spec.id_columns, *spec.features, *([spec.error_col] if spec.error_col else [])]
    for name in spec.id_columns:
        kind = schema.field(name).type
        if name in (spec.key, spec.group) and not _text_or_integer(kind):
            return f"column {name!r} is {kind}: a group or key column must be text or integer"
        if not is_hashable(kind):
            return f"column {name!r} is {kind}"
    if spec.label:
        kind = schema.field(spec.label).type
        if spec.task == "classification" and not (_text_or_integer(kind)
                                                  or pa.types.is_boolean(kind)):
            return f"label {spec.label!r} is {kind}"
        if spec.task == "regression" and not _numeric(kind):
            return f"label {spec.label!r} is {kind}"
    try:
        rows = dataset.count_rows()
    except (OSError, ValueError) as e:
        return f"pyarrow cannot read its footers: {e}"
    values = rows * (len(need) + 4) * bytes_per_value
    if rows > max_rows or values > memory_mb * 2**20:
        return (f"{rows} rows are more than one task takes (train.sklearn_max_rows, "
                "train.task_memory_mb)")
    return TaskSplit(table, folder, files, spec, rows)


def split_in_task(spark: Any, plan: TaskSplit, stage: Folder, columns: list[str]
                  ) -> SplitResult:
    """Read, split and stage `plan`'s table in one Spark task (module doc); the staged rows
    are written as one file per core (Spark engines read them in parallel); `columns`: those
    later steps read (`StagedRows.columns`)."""
    from medspark.config import ConfigError
    from medspark.spark.models.base import StagedRows
    from medspark.spark.models.tasks import spark_tasks

    parts = max(1, int(spark.sparkContext.defaultParallelism))

    def run_one(broadcasts: Any, _task: int) -> pd.DataFrame:
        return pd.DataFrame({"result": [json.dumps(_split_and_write(plan, stage, parts))]})

    rows = spark_tasks(spark, [], 1, run_one, "result string",
                       f"medspark train: read, split and stage {plan.rows} rows in a task")
    doc = json.loads(rows[0]["result"])
    if "error" in doc:
        raise ConfigError(doc["error"])
    if "declined" in doc:
        raise SplitDeclined(doc["declined"])
    staged = StagedRows.of(stage, doc["files"], plan.spec.key, columns)
    return SplitResult(doc["counts"], doc["labels"], doc["cells"], doc["fingerprint"], staged,
                       f"{stage.spark_uri()}/{GROUPS_FILE}", doc["balance"],
                       _spark_schema(doc["schema"]))


def _spark_schema(encoded: str) -> Any:
    """The staged files' Spark schema from their Arrow schema (the task's), so reading them
    infers nothing; None where Arrow's type has no Spark twin here (unsigned integers)."""
    import base64

    from pyspark.errors import PySparkTypeError
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded)))
    try:
        return from_arrow_schema(schema)
    except (PySparkTypeError, TypeError):
        return None


def _split_and_write(plan: TaskSplit, stage: Folder, parts: int) -> dict[str, Any]:
    """In the task: read the table, split it, write the staged rows and the group table."""
    import base64

    import pyarrow.parquet as pq

    spec = plan.spec
    columns = list(dict.fromkeys([*spec.id_columns, *spec.features,
                                  *([spec.error_col] if spec.error_col else [])]))
    if not plan.files:
        return {"error": f"table {plan.where} has no files"}
    try:
        table = pa.concat_tables(pq.read_table(f, columns=columns, filesystem=plan.table.fs)
                                 for f in plan.files)
        result = split_table(table, spec)
    except SplitError as e:
        return {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - what this path does not follow goes to Spark SQL
        # (files whose schemas differ, a null key, a type the footers did not show)
        return {"declined": f"{type(e).__name__}: {e}"}
    del table
    stage.fs.create_dir(stage.path, recursive=True)
    files = []
    step = -(-result.rows.num_rows // parts) or 1
    for i, start in enumerate(range(0, max(result.rows.num_rows, 1), step)):
        name = ROWS_FILE.format(i)
        pq.write_table(result.rows.slice(start, step), f"{stage.path}/{name}",
                       filesystem=stage.fs, use_dictionary=False)
        files.append(name)
    pq.write_table(result.groups, f"{stage.path}/{GROUPS_FILE}", filesystem=stage.fs)
    return {"counts": result.counts, "labels": result.labels, "cells": result.cells,
            "fingerprint": result.fingerprint, "files": files, "balance": result.balance,
            "schema": base64.b64encode(result.rows.schema.remove_metadata().serialize()
                                       .to_pybytes()).decode()}
