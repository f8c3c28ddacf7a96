"""Work that runs as Spark tasks over staged rows: the runner and the rows a task reads.

`spark_tasks` turns `n` independent jobs (grid point x fold fits, fold imputers) into one Spark
stage of `n` tasks over broadcast payloads, in a named job group; each returns a small pandas
frame (a score, a pickled model). `stage_rows` writes the run's rows once as Parquet (Spark
writes, on the lake's filesystem); `read_rows` is what a task does with it: read it with
pyarrow, sort it by the row key (a fit must not depend on Spark's partitioning), keep the rows of
its fold, apply the fold's imputer. Nothing row-sized passes through the driver.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from medspark.lake import read_parquet_in_order
from medspark.models.folder import Folder
from medspark.spark.models.base import FOLD, StagedRows

JOB_GROUP = "medspark-model-tasks"
WARM_GROUP = "medspark-warm-workers"
log = logging.getLogger(__name__)
_JOB_PROPS = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")


@contextmanager
def _job_group(sc: Any, description: str, group: str = JOB_GROUP) -> Iterator[None]:
    """Run the enclosed jobs under `group`, restoring the caller's properties after."""
    before = {k: sc.getLocalProperty(k) for k in _JOB_PROPS}
    sc.setJobGroup(group, description)
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


class WarmUp:
    """The background job `warm_workers` started: `join` it before the run ends, or `cancel`
    it first when the run fails (its error then need not wait for the workers' start)."""

    def __init__(self, sc: Any, thread: threading.Thread) -> None:
        self.sc, self.thread = sc, thread

    def cancel(self) -> None:
        self.sc.cancelJobGroup(WARM_GROUP)

    def join(self) -> None:
        self.thread.join()


def warm_workers(spark: Any, modules: Sequence[str], spare: bool = False) -> WarmUp:
    """Start one Python worker per core (`spare`: but one, for a task the run starts right
    away) and import `modules` in it, as a background no-op job.

    A run's first Python tasks otherwise pay ~2 s to start their workers and import pandas,
    pyarrow and scikit-learn; started while the driver plans and the JVM reads the source,
    that cost overlaps with work that leaves cores idle (Spark reuses the workers). A failure
    (or a cancel) only loses the head start (logged)."""
    sc = spark.sparkContext
    n = max(1, int(sc.defaultParallelism) - (1 if spare else 0))
    names = list(dict.fromkeys(modules))

    def start(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for name in names:
            # a candidate that cannot be imported says so where it is fitted
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        for batch in batches:
            yield batch.iloc[:0]

    def job() -> None:
        try:
            with _job_group(sc, "medspark: start Python workers", WARM_GROUP):
                (spark.range(0, n, 1, numPartitions=n).mapInPandas(start, schema="id long")
                 .write.format("noop").mode("overwrite").save())
        except Exception as e:  # noqa: BLE001 - an optimisation; the run itself reports
            log.info("starting Python workers ahead failed: %s", e)

    thread = threading.Thread(target=job, name="medspark-warm-workers", daemon=True)
    thread.start()
    return WarmUp(sc, thread)


def stage_rows(frame: DataFrame, folder: Folder, key: str, columns: list[str],
               observe: Sequence[Any] = ()) -> tuple[StagedRows, dict[str, Any]]:
    """Write `frame` (raw rows, not imputed; every column) under `folder` once; tasks read
    `key`, `_ms_fold` and `columns` of it. `observe`: named aggregate expressions computed
    by the same pass (`DataFrame.observe`), returned with the staged rows."""
    from pyspark.sql import Observation

    uri = folder.spark_uri()
    if uri is None:
        raise ValueError(f"{folder}: staged rows need a folder Spark can write")
    observation = Observation("medspark_staged") if observe else None
    if observation is not None:
        frame = frame.observe(observation, *observe)
    # no dictionary encoding: features are mostly distinct doubles, where trying it cost
    # Spark's writer 40% of the write (100k x 100: 2.2 -> 1.35 s)
    frame.write.mode("overwrite").option("parquet.enable.dictionary", "false").parquet(uri)
    files = [n for n in folder.names() if n.endswith(".parquet")]
    return (StagedRows.of(folder, files, key, columns),
            observation.get if observation is not None else {})


def read_staged(spark: Any, staged: StagedRows, schema: StructType | None = None) -> DataFrame:
    """The staged rows as a Spark frame whose partitions hold the same rows in the same order
    on every run (`lake.read_parquet_in_order`); `schema`: theirs, when known (no footer
    read to infer it)."""
    uri = staged.folder.spark_uri()
    if not staged.files:
        return spark.read.parquet(uri)
    return read_parquet_in_order(spark, [f"{uri}/{name}" for name in staged.files],
                                 schema=schema)


_SPLITS = {"train": [(FOLD, ">=", 0)], "test": [(FOLD, "==", -1)], "all": None}


def read_rows(staged: StagedRows, columns: Sequence[str] | None = None,
              split: str = "train") -> pd.DataFrame:
    """The staged rows of `split` (train: every CV fold; test: the held-out split; all), or
    `columns` of them, sorted by the key, in a task."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(dict.fromkeys([staged.key, FOLD, *(columns or staged.columns)]))
    tables = [pq.read_table(f"{staged.folder.path}/{f}", columns=cols,
                            filesystem=staged.folder.fs, filters=_SPLITS[split])
              for f in staged.files]
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
    """The rows the fold's imputer accepts, imputed: those no step rejected and with no model
    feature left missing (the rows and model-feature values Spark's `impute` keeps; what
    `mark_rejected` would keep, without its bookkeeping of the rejected rows)."""
    from medspark.models.missing import model_features

    return complete_rows(imputer.transform(pdf.reset_index(drop=True)).frame,
                         model_features(imputer, features))


def complete_rows(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The rows of an imputed `frame` with no model feature left missing."""
    return frame[~frame[features].isna().to_numpy().any(axis=1)]


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
