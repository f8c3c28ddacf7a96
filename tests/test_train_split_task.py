"""A table small enough for one task is read, split and staged there (pyarrow + numpy) instead
of by Spark SQL: Spark's xxhash64 in numpy, and both paths giving the same rows, folds, counts,
classes, fingerprint and model id, the same errors, and the Spark path for the tables the task
path does not take."""

from __future__ import annotations

import json
import random
import string

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings
from medspark.models.config import TrainSettings
from medspark.models.folder import Folder
from medspark.models.spark_hash import xxhash64, xxhash64_int_then
from medspark.spark.models.base import FOLD, GROUP
from medspark.spark.models.folds import FoldSet, assign_folds
from medspark.spark.models.split_task import split_in_task
from medspark.spark.models.tasks import read_staged
from medspark.spark.train import (
    fingerprint_aggregates,
    fingerprint_of,
    plan_in_task,
    preflight,
    prepare,
    run_train,
)


def hash_table(n: int = 2000, seed: int = 1) -> pa.Table:
    """Every type the numpy hash follows, with the values that trip hashes up: strings of
    every length class (0-100 bytes, multi-byte UTF-8), -0.0, NaN, infinities, nulls."""
    rng = random.Random(seed)

    def text():
        if rng.random() < 0.05:
            return None
        size = rng.choice([0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 40, 64, 65, 100])
        return "".join(rng.choice(string.ascii_letters + "éü漢😀") for _ in range(size))

    def num(scale):
        return rng.choice([0.0, -0.0, float("nan"), float("inf"), -float("inf"), None,
                           rng.gauss(0, scale)])

    return pa.table({
        "s": pa.array([text() for _ in range(n)], pa.string()),
        "i8": pa.array([None if rng.random() < .05 else rng.randint(-128, 127)
                        for _ in range(n)], pa.int8()),
        "u16": pa.array([rng.randint(0, 65535) for _ in range(n)], pa.uint16()),
        "i32": pa.array([rng.randint(-2**31, 2**31 - 1) for _ in range(n)], pa.int32()),
        "u32": pa.array([rng.randint(0, 2**32 - 1) for _ in range(n)], pa.uint32()),
        "i64": pa.array([None if rng.random() < .05 else rng.randint(-2**63, 2**63 - 1)
                         for _ in range(n)], pa.int64()),
        "f32": pa.array([num(1e3) for _ in range(n)], pa.float32()),
        "f64": pa.array([num(1e9) for _ in range(n)], pa.float64()),
        "b": pa.array([rng.choice([True, False, None]) for _ in range(n)], pa.bool_()),
    })


def test_xxhash64_is_sparks(spark, tmp_path):
    table = hash_table()
    pq.write_table(table, tmp_path / "h.parquet")
    df = spark.read.parquet(str(tmp_path / "h.parquet"))
    cols = table.column_names
    got = df.select(*[F.xxhash64(c).alias(c) for c in cols], F.xxhash64(*cols).alias("all"),
                    F.xxhash64(F.lit(7), F.col("s")).alias("seeded")).toPandas()
    n = table.num_rows
    for c in cols:
        np.testing.assert_array_equal(xxhash64([table[c]], n), got[c].to_numpy(), err_msg=c)
    np.testing.assert_array_equal(xxhash64([table[c] for c in cols], n), got["all"].to_numpy())
    np.testing.assert_array_equal(xxhash64_int_then(7, table["s"]), got["seeded"].to_numpy())


def source(path, n_patients: int = 300, seed: int = 0) -> str:
    """A table with what the reading steps must treat alike: rows without a patient (their own
    group), without a label, with a feature error; integer, float32 and NaN features."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 6, size=n_patients)
    patient = np.repeat(np.arange(n_patients), rows)
    n = len(patient)
    x = rng.normal(size=(n, 3))
    label = np.where(x[:, 0] + rng.normal(scale=0.7, size=n) > 0, "tumour", "normal")
    table = pa.table({
        "row_id": pa.array([f"r{i:05d}" for i in rng.permutation(n)]),
        "patient_id": pa.array([None if i % 37 == 0 else int(p) for i, p in enumerate(patient)],
                               pa.int64()),
        "target": pa.array([None if i % 53 == 0 else v for i, v in enumerate(label)]),
        "size": pa.array(x[:, 0] * 10 + 50, pa.float64()),
        "f_float32": pa.array(np.where(rng.random(n) < 0.05, np.nan, x[:, 1]), pa.float32()),
        "f_int": pa.array(rng.integers(-5, 5, size=n), pa.int32()),
        "value": pa.array([None if i % 59 == 0 else v for i, v in enumerate(x[:, 2] + x[:, 0])],
                          pa.float64()),
        "feature_error": pa.array([("unreadable" if i % 71 == 0 else None) for i in range(n)]),
    })
    pq.write_table(table, path)
    return str(path)


TASKS = {
    "classification": {"label": "target", "positive_label": "tumour", "selection": {
        "candidates": [{"algorithm": "LogisticRegression", "params": {"maxIter": 20}}]}},
    "regression": {"task": "regression", "label": "value", "selection": {"candidates": [
        {"algorithm": "LinearRegression"}]}},
    "clustering": {"task": "clustering", "selection": {"candidates": [
        {"algorithm": "KMeans", "params": {"k": 2}}]}},
}


def settings(task: str, **kw) -> TrainSettings:
    doc = {"id_col": "row_id", "group_col": "patient_id", "test_size": 0.25, "n_boot": 10,
           "seed": 3, **TASKS[task], **kw}
    doc["selection"] = {"folds": 3, **doc.get("selection", {})}
    return TrainSettings.model_validate(doc)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return source(tmp_path_factory.mktemp("split-task") / "t.parquet")


def staged_sorted(frame):
    return frame.toPandas().sort_values("row_id").reset_index(drop=True)


@pytest.mark.parametrize("task", list(TASKS))
def test_the_task_splits_as_spark_sql_does(spark, table, tmp_path, task):
    cfg = settings(task)
    pre = preflight(Settings(), str(tmp_path), table, train=cfg)
    # Spark SQL: prepare, assign_folds, stage (the fingerprint observed by the staging write)
    data = prepare(spark, pre, None, table)
    framed, groups, split = assign_folds(
        data.frame, group=data.group, key=data.key, stratify=task == "classification",
        test_size=cfg.test_size, k=3, seed=cfg.seed, labels=data.labels)
    columns = [data.key, GROUP, *(["_ms_label"] if data.label else []), *data.features]
    folds = FoldSet(framed, 3, data.key, data.features, columns, {},
                    Folder.at(tmp_path / "spark"), observe=fingerprint_aggregates(data.hashed))
    folds.stage()
    # one task
    plan = plan_in_task(pre, table)
    assert not isinstance(plan, str) and plan.spec.features == data.features
    done = split_in_task(spark, plan, Folder.at(tmp_path / "task"), columns)

    assert done.counts == data.counts
    assert done.counts["feature_error_rows"] > 0
    if task != "clustering":
        assert done.counts["rows_without_label"] > 0
    assert done.labels == data.labels
    assert done.fingerprint == fingerprint_of([folds.observed])
    from medspark.models.hash_split import split_counts

    assert split_counts(done.cells, 3, "patient_id", task == "classification",
                        done.labels) == split
    assert split["groups_without_id"] > 0
    spark_rows = staged_sorted(read_staged(spark, folds.staged))
    assert done.schema is not None  # read with the schema the task wrote, nothing inferred
    task_rows = staged_sorted(read_staged(spark, done.staged, done.schema))
    assert sorted(task_rows.columns) == sorted(spark_rows.columns)
    spark_rows = spark_rows[task_rows.columns]
    assert (task_rows.dtypes == spark_rows.dtypes).all()
    import pandas.testing as pdt

    pdt.assert_frame_equal(task_rows, spark_rows)
    task_groups = spark.read.parquet(done.groups_file).toPandas().sort_values(GROUP)
    spark_groups = groups.select(GROUP, FOLD).toPandas().sort_values(GROUP)
    pdt.assert_frame_equal(task_groups.reset_index(drop=True),
                           spark_groups.reset_index(drop=True))
    groups.unpersist()


def test_same_model_id_and_metrics_either_way(spark, table, tmp_path):
    runs = {how: run_train(spark, Settings(), str(tmp_path / how), table=table,
                           train=settings("classification", prepare=how))
            for how in ("auto", "spark")}
    auto, sql = runs["auto"], runs["spark"]
    meta = {}
    for how, run in runs.items():
        with open(f"{run['outputs']['model']}/metadata.json") as fh:
            meta[how] = json.load(fh)
    # the task counts the classes on each side; Spark SQL aggregates the staged rows
    assert meta["auto"]["snapshot"] == meta["spark"]["snapshot"]
    assert set(meta["auto"]["snapshot"]["label_balance"]["test"]) == {"normal", "tumour"}
    assert auto["split"].pop("prepared_by").startswith("one Spark task")
    assert sql["split"].pop("prepared_by") == "Spark SQL (train.prepare: spark)"
    assert auto["model_id"] == sql["model_id"]
    assert auto["split"] == sql["split"] and auto["counts"] == sql["counts"]
    assert auto["test_metrics"] == sql["test_metrics"]
    assert auto["best"]["cv_mean"] == pytest.approx(sql["best"]["cv_mean"])


def test_the_same_errors_either_way(spark, tmp_path):
    rows = pa.table({"row_id": pa.array(range(40)), "patient_id": pa.array(
        [f"p{i // 2}" for i in range(40)]), "target": pa.array(
        [1 if i < 2 else 0 for i in range(40)]), "f": pa.array(np.linspace(0, 1, 40))})
    path = str(tmp_path / "one_positive_patient.parquet")
    pq.write_table(rows, path)
    errors = {}
    for how in ("auto", "spark"):
        with pytest.raises(ConfigError) as e:
            run_train(spark, Settings(), str(tmp_path / how), table=path,
                      train=settings("classification", prepare=how, positive_label=None))
        errors[how] = str(e.value)
    assert "class(es) [1] have fewer than 2 groups" in errors["auto"]
    assert errors["auto"] == errors["spark"]


def test_tables_the_task_does_not_take(tmp_path, table):
    import pyarrow.dataset as ds

    def plan(path, **kw):
        cfg = settings("classification", **kw)
        return plan_in_task(preflight(Settings(), str(tmp_path), path, train=cfg), path)

    assert not isinstance(plan(table), str)
    assert plan(table, prepare="spark") == "train.prepare: spark"
    assert "more than one task takes" in plan(table, sklearn_max_rows=100)
    assert not isinstance(plan(table, task_memory_mb=16, sklearn_max_rows=10**9), str)
    rows = pq.read_table(table)
    ds.write_dataset(rows.append_column("site", pa.array(["A", "B"] * (rows.num_rows // 2)
                                                          + ["A"] * (rows.num_rows % 2))),
                     tmp_path / "by_site", format="parquet", partitioning=["site"],
                     partitioning_flavor="hive")
    assert plan(str(tmp_path / "by_site")) == "the table has partition folders"
    odd = rows.set_column(rows.schema.get_field_index("row_id"), "row_id",
                          pa.array(np.arange(rows.num_rows) + 0.5))
    pq.write_table(odd, tmp_path / "float_key.parquet")
    assert "a group or key column must be text or integer" in plan(
        str(tmp_path / "float_key.parquet"))
    dec = rows.append_column("d", pa.array([1] * rows.num_rows, pa.decimal128(5, 1)))
    pq.write_table(dec, tmp_path / "decimal.parquet")
    assert plan(str(tmp_path / "decimal.parquet")) == "a decimal, uint64 or float16 column"


def test_staged_schema_for_spark():
    import base64

    from medspark.spark.models.split_task import _spark_schema

    def encoded(schema):
        return base64.b64encode(schema.serialize().to_pybytes()).decode()

    known = _spark_schema(encoded(pa.schema([("k", pa.string()), (FOLD, pa.int32()),
                                             ("f", pa.float64())])))
    assert known.simpleString() == "struct<k:string,_ms_fold:int,f:double>"
    # Spark reads a uint16 column as int, which Arrow's conversion does not know: inferred
    assert _spark_schema(encoded(pa.schema([("k", pa.uint16())]))) is None


def test_a_table_the_task_cannot_split_goes_to_spark_sql(spark, table, tmp_path):
    """A row with neither key nor group: the footers cannot show it, the task declines (its
    own-group id would be null) and the same run reads the table with Spark SQL."""
    rows = pq.read_table(table)
    for name in ("row_id", "patient_id"):
        column = rows[name].to_pylist()
        column[1] = None  # (row 0 has a feature error: dropped before the split)
        rows = rows.set_column(rows.schema.get_field_index(name), name,
                               pa.array(column, rows.schema.field(name).type))
    path = str(tmp_path / "no_key.parquet")
    pq.write_table(rows, path)
    assert not isinstance(plan_in_task(preflight(Settings(), str(tmp_path), path,
                                                 train=settings("classification")), path), str)
    run = run_train(spark, Settings(), str(tmp_path / "lake"), table=path,
                    train=settings("classification"))
    assert run["split"]["prepared_by"].startswith("Spark SQL (the task declined the table: ")
    assert run["counts"]["rows_read"] == rows.num_rows - int(
        pa.compute.sum(rows["feature_error"].is_valid()).as_py())
