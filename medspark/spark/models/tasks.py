"""Work that runs as Spark tasks over staged rows: the runner and the rows a task reads.

`spark_tasks` turns `n` independent jobs (grid point x fold fits, fold imputers) into one Spark
stage of `n` tasks over broadcast payloads, in a named job group; each returns a small pandas
frame (a score, a pickled model). `stage_rows` writes the run's rows once as Parquet (Spark
writes, on the lake's filesystem); `read_rows` is what a task does with it: read it with
pyarrow, sort it by the row key (a fit must not depend on Spark's partitioning), keep the rows of
its fold, apply the fold's imputer. Nothing row-sized passes through the driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from medspark.models.folder import Folder
from medspark.spark.models.base import FOLD, REJECT_STEP, StagedRows

JOB_GROUP = "medspark-model-tasks"
_JOB_PROPS = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")


@contextmanager
def _job_group(sc: Any, description: str) -> Iterator[None]:
    """Run the enclosed jobs under `JOB_GROUP`, restoring the caller's properties after."""
    before = {k: sc.getLocalProperty(k) for k in _JOB_PROPS}
    sc.setJobGroup(JOB_GROUP, description)
    try:
        yield
    finally:
        for key, value in before.items():
            sc.setLocalProperty(key, value)


def spark_tasks(spark: Any, payloads: Sequence[Any], n_tasks: int,
                run_one: Callable[[Sequence[Any], int], pd.DataFrame], schema: StructType,
                description: str) -> list[Any]:
    """The rows of `run_one(broadcasts, task_id)` for task ids 0..n-1, one Spark task each.

    Each payload is broadcast once; `run_one` reads `broadcasts[i].value` for those it needs.
    Results must be small (they are collected): a score, a fitted model.
    """
    sc = spark.sparkContext
    broadcasts = [sc.broadcast(p) for p in payloads]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from medspark.worker import freeze_long_lived

        freeze_long_lived()
        for batch in batches:
            for task_id in batch["id"]:
                yield run_one(broadcasts, int(task_id))

    try:
        with _job_group(sc, description):
            tasks = spark.range(0, n_tasks, 1, numPartitions=max(n_tasks, 1))
            return tasks.mapInPandas(run, schema=schema).collect()
    finally:
        for bc in broadcasts:
            bc.unpersist()


def stage_rows(frame: DataFrame, folder: Folder, key: str, columns: list[str]) -> StagedRows:
    """Write `frame` (raw rows, not imputed; every column) under `folder` once; tasks read
    `key`, `_ms_fold` and `columns` of it."""
    uri = folder.spark_uri()
    if uri is None:
        raise ValueError(f"{folder}: staged rows need a folder Spark can write")
    frame.write.mode("overwrite").parquet(uri)
    files = [n for n in folder.names() if n.endswith(".parquet")]
    return StagedRows(folder, files, key, list(dict.fromkeys([key, FOLD, *columns])))


def read_rows(staged: StagedRows, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The staged training rows (or `columns` of them) sorted by the key, in a task."""
    import pyarrow.parquet as pq

    cols = list(dict.fromkeys([staged.key, FOLD, *(columns or staged.columns)]))
    tables = [pq.read_table(f"{staged.folder.path}/{f}", columns=cols,
                            filesystem=staged.folder.fs, filters=[(FOLD, ">=", 0)])
              for f in staged.files]
    import pyarrow as pa

    if not tables:
        return pd.DataFrame(columns=cols)
    # sorted by Arrow before pandas sees it (a stable sort; several times faster than
    # reordering every pandas column)
    return pa.concat_tables(tables).sort_by([(staged.key, "ascending")]).to_pandas()


def fold_rows(pdf: pd.DataFrame, fold: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, validation rows) of `fold` (None: every training row, no validation)."""
    folds = pdf[FOLD].to_numpy()
    if fold is None:
        return pdf[folds >= 0], pdf.iloc[:0]
    held = folds == fold
    return pdf[(folds >= 0) & ~held], pdf[held]


def impute_accepted(pdf: pd.DataFrame, imputer: Any, features: list[str]) -> pd.DataFrame:
    """The rows the fold's imputer accepts, imputed (exactly what Spark's `impute` keeps)."""
    from medspark.models.missing import mark_rejected

    out = mark_rejected(pdf.reset_index(drop=True), imputer, features)
    return out[out[REJECT_STEP].isna()]


class Stopwatch:
    """Seconds since it started, and per named stage (`lap`): where a job's time went."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.start = self._last = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now
        return self.laps[name]


def threads_of(spark: Any) -> int:
    """Cores one task may use when it runs alone (the winner's refit): an executor's cores,
    or all local cores in local mode."""
    sc = spark.sparkContext
    conf = sc.getConf()
    if sc.master.startswith("local"):
        return max(1, int(sc.defaultParallelism))
    return max(1, int(conf.get("spark.executor.cores", "1")))


def as_float(values: Any) -> np.ndarray:
    return np.asarray(values, dtype="float64")
