"""The train job: patient-grouped selection over the candidates, refit, held-out evaluation.

    read the rows (lake features at a version, or any Parquet table) -> split and folds by
    group in Spark -> fold imputers -> CV through the model interface -> refit the winner ->
    evaluate on the held-out groups -> models/<model_id>/ -> run manifest

The pieces live in `medspark.spark.models` (see its modules); this job wires them. Nothing that
grows with the rows is collected to the driver: labels and counts are aggregates, folds are
assigned by a hash of the group id, the training split reaches scikit-learn tasks as staged
Parquet files, fold scores are small statistics, and the held-out metrics rest on at most
`train.eval_max_rows` rows. Configuration errors (a missing column, an unknown setting) are
raised by `preflight`, from the table's schema, before Spark does any work.

`model_id` = `<algorithm>-<sha256 of the settings + data fingerprint + seed>[:16]`
(`sklearn-<estimator class>-...` for a scikit-learn fit): deterministic, so the same config,
data and seed give the same id (the folder is replaced) and the same metrics.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.config import ConfigError, Settings
from medspark.jsonable import num, py
from medspark.jsonable import short_hash as sha
from medspark.lake import Lake, read_parquet_in_order, table_of
from medspark.models.algorithms import get_algorithm, is_estimator_path
from medspark.models.config import TrainSettings
from medspark.models.folder import Folder
from medspark.models.hash_split import (
    MAX_CLASSES,
    SplitError,
    SplitSpec,
    class_order,
    split_counts,
    too_many_classes,
)
from medspark.spark.models.base import (
    FOLD,
    GROUP,
    LABEL,
    HeldOut,
    ModelContext,
    ModelSpec,
    engine_class,
)
from medspark.spark.models.evaluation import test_metrics, write_plots
from medspark.spark.models.impute import plan_columns
from medspark.versions import library_versions

__all__ = ["aggregate_series", "data_fingerprint", "encode_label", "preflight",
           "read_features", "run_train", "sha", "test_metrics", "versions", "write_plots"]

log = logging.getLogger(__name__)
NUMERIC = (T.DoubleType, T.FloatType, T.IntegerType, T.LongType, T.ShortType, T.DecimalType,
           T.ByteType)
ERROR_COL = "feature_error"
LAKE_RESERVED = ("slice_position", "plane_index")


# ------------------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """The modelling frame: key, group, encoded label, features (+ columns the imputer needs)."""

    frame: DataFrame | None  # None: one task read, split and staged the table
    key: str
    group: str
    label: str | None
    features: list[str]
    extra: list[str]
    aggregate: str
    labels: list[Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    # the columns of the data fingerprint (`fingerprint_aggregates` over `frame`'s rows: those
    # kept, i.e. read, without error, labelled), computed by the first pass over all of them
    hashed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Preflight:
    """What the checks before Spark found: the resolved settings and the source's columns."""

    cfg: TrainSettings
    aggregate: str
    key: str
    columns: dict[str, str]  # name -> Arrow type


def train_settings(settings: Settings, train: TrainSettings | None,
                   overrides: dict[str, Any] | None = None) -> TrainSettings:
    """`train` if given, else `settings.train`, with the non-None `overrides` validated."""
    cfg = train or getattr(settings, "train", None) or TrainSettings()
    upd = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not upd:
        return cfg
    try:
        return TrainSettings.model_validate({**cfg.model_dump(), **upd})
    except ValidationError as e:
        raise ConfigError(f"train settings with {upd}: {e}") from None


def read_features(spark: SparkSession, lake: Lake, feature_set: str | None,
                  version: int | str | None = None) -> tuple[DataFrame, dict[str, Any]]:
    """One feature set of the lake (the configured one or the only one) at its table's
    current version (or `version`: a number or a timestamp), and where it came from."""
    table, snap = _features_snapshot(lake, feature_set, version)
    frame = lake.read(spark, table, snap=snap)
    return frame, {"lake": lake.root, "features": lake.path(table),
                   "feature_set": table.split("=", 1)[1], "features_version": snap.version}


def _features_snapshot(lake: Lake, feature_set: str | None, version: int | str | None):
    sets = lake.configurations("features")
    if feature_set is None:
        if len(sets) != 1:
            raise ConfigError(f"{lake.path('features')} holds feature sets {sets}: set "
                              "train.feature_set" if sets else f"{lake.path('features')} not "
                              "found: run `medspark features` first")
        feature_set = sets[0]
    elif feature_set not in sets:
        raise ConfigError(f"feature set {feature_set} is not in {lake.path('features')} "
                          f"(it holds {sets}): run `medspark features` first")
    table = table_of("features", feature_set)
    try:
        snap = lake.snapshot(table, version)
    except Exception as e:  # noqa: BLE001 - no such version / timestamp before the table
        raise ConfigError(f"--as-of {version}: {lake.path(table)} has no such version "
                          f"({str(e).splitlines()[0]})") from None
    return table, snap


def read_source(spark: SparkSession, lake: Lake | None, table: str | None,
                train: TrainSettings, as_of: int | str | None = None
                ) -> tuple[DataFrame, dict[str, Any]]:
    """The raw table and where it came from (the lake's features: the exact version read)."""
    if table:
        try:
            return read_table(spark, table), {"table": table}
        except Exception as e:  # noqa: BLE001 - AnalysisException: path does not exist
            raise ConfigError(f"table {table} cannot be read: {e}") from None
    assert lake is not None
    return read_features(spark, lake, train.feature_set, as_of)


# -------------------------------------------------------------------------------- preflight
def read_table(spark: SparkSession, table: str) -> DataFrame:
    """A Parquet table (a file, or a folder with hive partitions or not); a folder's files in
    name order, so its partitions hold the same rows on every read
    (`lake.read_parquet_in_order`)."""
    import pyarrow.fs as pafs

    frame = spark.read.parquet(table)
    folder = Folder.at(table)
    if folder.fs.get_file_info(folder.path).type != pafs.FileType.Directory:
        return frame
    files = frame.inputFiles()
    if len(files) < 2:
        return frame
    return read_parquet_in_order(spark, files, base=table, schema=frame.schema)


def table_columns(table: str) -> dict[str, str]:
    """Column name -> Arrow type of a Parquet table (a file or a folder), read with pyarrow."""
    import pyarrow.dataset as ds

    folder = Folder.at(table)
    try:
        schema = ds.dataset(folder.path, filesystem=folder.fs, format="parquet",
                            partitioning="hive").schema
    except (OSError, ValueError) as e:
        raise ConfigError(f"table {table} cannot be read: {e}") from None
    return {f.name: str(f.type) for f in schema}


def preflight(settings: Settings, lake_root: str | None, table: str | None = None, *,
              train: TrainSettings | None = None, as_of: int | str | None = None,
              **overrides: Any) -> Preflight:
    """Every check that needs only settings and the source's schema, before Spark starts:
    the columns the settings name exist, features match, `aggregate: auto` resolved. The
    messages name the setting to change."""
    cfg = train_settings(settings, train, overrides)
    if not lake_root:
        raise ConfigError("train needs --lake (models/ are written there)")
    if table:
        columns, where = table_columns(table), f"table {table}"
    else:
        lake = Lake(lake_root)
        name, snap = _features_snapshot(lake, cfg.feature_set, as_of)
        columns = {f.name: str(f.type) for f in snap.arrow_schema} if snap.arrow_schema else {}
        where = lake.path(name)
    aggregate = cfg.aggregate
    if aggregate == "auto":
        aggregate = "series_max" if not table and cfg.series_col in columns else "none"
    key = cfg.series_col if aggregate != "none" else cfg.id_col
    extra = plan_columns(cfg.missing_plan([], []))
    needed = {key: "train.series_col (train.aggregate=" + aggregate + ")"
              if aggregate != "none" else "train.id_col (--id-col)",
              cfg.group_col: "train.group_col (--group-col)"}
    if cfg.task != "clustering":
        needed[cfg.label] = "train.label (--label)"
    if cfg.per_group:
        needed[cfg.per_group] = "train.per_group"
    for col in extra:
        needed.setdefault(col, "an interpolate rule of train.missing")
    absent = {c: why for c, why in needed.items() if c not in columns}
    if absent:
        hint = "; set train.aggregate=none" if aggregate != "none" and key in absent else ""
        raise ConfigError(f"{where} has no column(s) " + ", ".join(
            f"{c!r} (from {why})" for c, why in absent.items())
            + f"{hint}; its columns: {sorted(columns)[:40]}")
    if extra and aggregate != "none":
        raise ConfigError("interpolation rules need plane rows: set train.aggregate=none")
    if cfg.features:
        numeric = [c for c, t in columns.items() if _numeric(t)]
        unmatched = [p for p in cfg.features
                     if not any(fnmatch.fnmatchcase(c, p) for c in numeric)]
        if unmatched:
            raise ConfigError(f"train.features: no numeric column of {where} matches "
                              f"{unmatched}")
    return Preflight(cfg, aggregate, key, columns)


def _numeric(arrow_type: str) -> bool:
    return arrow_type.startswith(("int", "uint", "float", "double", "decimal", "halffloat"))


# ---------------------------------------------------------------------------------- prepare
def choose_features(df: DataFrame, patterns: list[str], reserved: list[str], lake_mode: bool,
                    setting: str = "train.features") -> list[str]:
    """Feature columns: the numeric columns `patterns` (names/globs) match, else every feature
    (lake: the radiomics columns; a table: every numeric column not `reserved`). Errors name
    `setting`."""
    numeric = [f.name for f in df.schema.fields if isinstance(f.dataType, NUMERIC)]
    return pick_features(numeric, patterns, reserved, lake_mode, setting)


def pick_features(numeric: list[str], patterns: list[str], reserved: list[str], lake_mode: bool,
                  setting: str = "train.features") -> list[str]:
    """`choose_features` given the numeric column names (from Spark's or Arrow's schema)."""
    numeric = [c for c in numeric if c not in reserved]
    if patterns:
        out = [c for c in numeric if any(fnmatch.fnmatchcase(c, p) for p in patterns)]
        absent = [p for p in patterns if not any(fnmatch.fnmatchcase(c, p) for c in out)]
        if absent:
            raise ConfigError(f"{setting}: no numeric column matches {absent}")
        return out
    if lake_mode:
        from medspark.features import feature_names

        known = set(feature_names(None))
        numeric = [c for c in numeric if c in known]
    if not numeric:
        raise ConfigError(f"no numeric feature column in the table: set {setting}")
    return numeric


def aggregate_series(df: DataFrame, how: str, series: str, group: str, label: str | None,
                     features: list[str], extra: list[str] | None = None) -> DataFrame:
    """One row per series: mean/max of each feature (NaN/null ignored), group and label."""
    fn = F.avg if how == "series_mean" else F.max
    aggs = [fn(F.nanvl(F.col(c).cast("double"), F.lit(None).cast("double"))).alias(c)
            for c in features]
    keep = [F.max(c).alias(c) for c in dict.fromkeys([group, *([label] if label else []),
                                                      *(extra or [])]) if c != series]
    return df.groupBy(series).agg(*keep, *aggs).sortWithinPartitions(series)


def _roles(pre: Preflight, lake_mode: bool) -> tuple[str | None, list[str], list[str]]:
    """(the label column or None, the extra columns the imputer or `per_group` needs, the
    columns that are never features)."""
    cfg = pre.cfg
    label = cfg.label if cfg.task != "clustering" else None
    extra = [c for c in dict.fromkeys([*plan_columns(cfg.missing_plan([], [])),
                                       *([cfg.per_group] if cfg.per_group else [])])
             if c not in (pre.key, cfg.group_col, label)]
    reserved = [cfg.id_col, cfg.group_col, pre.key, *([label] if label else []), *extra,
                *(LAKE_RESERVED if lake_mode else ())]
    return label, extra, reserved


def prepare(spark: SparkSession, pre: Preflight, lake: Lake | None, table: str | None,
            as_of: int | str | None = None) -> TrainData:
    """Read and select (or aggregate) the rows, count them and encode the label as
    `_ms_label`, in one pass for the counts and labels."""
    cfg = pre.cfg
    raw, source = read_source(spark, lake, table, cfg, as_of)
    label, extra, reserved = _roles(pre, lake_mode=lake is not None)
    feats = choose_features(raw, cfg.features, reserved, lake_mode=table is None)
    counts: dict[str, int] = {}
    errors = F.col(ERROR_COL).isNotNull() if ERROR_COL in raw.columns else F.lit(False)
    if pre.aggregate != "none":
        counts["feature_error_rows"] = int(raw.where(errors).count()) \
            if ERROR_COL in raw.columns else 0
        df = aggregate_series(raw.where(~errors), pre.aggregate, pre.key, cfg.group_col, label,
                              feats, extra).cache()
        errors = F.lit(False)
    else:
        ids = dict.fromkeys([pre.key, cfg.group_col, *([label] if label else []), *extra])
        # SQL strings: one call to the JVM for any number of features (a Column per feature
        # cost ~8 ms each through py4j)
        df = raw.withColumn("_ms_error", errors).selectExpr(
            *[quote(c) for c in ids],
            *[f"CAST({quote(c)} AS DOUBLE) AS {quote(c)}" for c in feats], "_ms_error")
        errors = F.col("_ms_error")
    hashed = [c for c in df.columns if c != "_ms_error"]
    df, labels = _count_and_encode(spark, df, label, errors, cfg, counts)
    if "_ms_error" in df.columns:
        df = df.drop("_ms_error")
    return TrainData(df, pre.key, cfg.group_col, label, feats, extra, pre.aggregate, labels,
                     source, counts, hashed)


def _count_and_encode(spark: SparkSession, df: DataFrame, label: str | None, errors: Any,
                      cfg: TrainSettings, counts: dict[str, int]
                      ) -> tuple[DataFrame, list[Any] | None]:
    """Counts (and the classes, for classification) in one aggregate of the label and error
    columns only; `_ms_label` added."""
    if label and cfg.task == "classification":
        rows = (df.groupBy(F.col(label).alias("_l"), errors.alias("_e"))
                .agg(F.count(F.lit(1)).alias("count")).limit(MAX_CLASSES + 2).collect())
        if len(rows) > MAX_CLASSES:
            raise ConfigError(str(too_many_classes(label)))
        counts.setdefault("feature_error_rows", sum(r["count"] for r in rows if r["_e"]))
        ok = [r for r in rows if not r["_e"]]
        counts["rows_read"] = sum(r["count"] for r in ok)
        counts["rows_without_label"] = sum(r["count"] for r in ok if r["_l"] is None)
        values = sorted(r["_l"] for r in ok if r["_l"] is not None)
        return _encode(spark, df.where(~errors), label, values, cfg)
    r = df.agg(F.count(F.when(~errors, 1)).alias("n"), F.count(F.when(errors, 1)).alias("e"),
               F.count(F.when(~errors & F.col(label).isNull(), 1)).alias("u")
               if label else F.lit(0).alias("u")).first()
    counts.setdefault("feature_error_rows", int(r["e"]))
    counts["rows_read"], counts["rows_without_label"] = int(r["n"]), int(r["u"])
    df = df.where(~errors)
    if label:
        return df.where(F.col(label).isNotNull()).withColumn(
            LABEL, F.col(label).cast("double")), None
    return df, None


def _encode(spark: SparkSession, df: DataFrame, label: str, values: list[Any],
            cfg: TrainSettings) -> tuple[DataFrame, list[Any]]:
    """`_ms_label` = the class index (classes sorted; `positive_label` last)."""
    try:
        values = class_order(values, label, cfg.task, cfg.positive_label)
    except SplitError as e:
        raise ConfigError(str(e)) from None
    index = spark.createDataFrame(
        [(v, float(i)) for i, v in enumerate(values)],
        T.StructType([T.StructField(label, df.schema[label].dataType),
                      T.StructField(LABEL, T.DoubleType())]))
    return df.join(F.broadcast(index), label), [py(v) for v in values]


def encode_label(spark: SparkSession, df: DataFrame, label: str,
                 train: TrainSettings) -> tuple[DataFrame, list[Any] | None]:
    """`_ms_label` double: the value (regression) or the class index (sorted; positive last);
    the classes come from a bounded distinct (at most 1000)."""
    if train.task == "regression":
        return df.withColumn(LABEL, F.col(label).cast("double")), None
    rows = df.select(label).distinct().limit(MAX_CLASSES + 1).collect()
    if len(rows) > MAX_CLASSES:
        raise ConfigError(f"label {label!r} has more than {MAX_CLASSES} values")
    values = sorted(r[0] for r in rows if r[0] is not None)
    return _encode(spark, df, label, values, train)


# ------------------------------------------------------------------------------------- ids
def fingerprint_aggregates(columns: list[str]) -> list[Any]:
    """The data fingerprint as aggregate expressions `rows` and `hash`, to add to any pass
    over the rows (an aggregate, or `DataFrame.observe` on a write): the row count and an
    order-free xor of the rows' xxhash64 of `columns` (changes when any value changes)."""
    return [F.count(F.lit(1)).alias("rows"), F.bit_xor(F.xxhash64(*columns)).alias("hash")]


def fingerprint_of(parts: list[Any]) -> dict[str, int]:
    """The fingerprint from `fingerprint_aggregates`' values over all rows (one part), or per
    group of rows (a `groupBy` that a job runs anyway): counts add up, and the xor of the
    groups' xors is the xor over every row, so both give `data_fingerprint` of the whole
    frame (no rows: hash 0)."""
    rows, digest = 0, 0
    for part in parts:
        rows += int(part["rows"])
        digest ^= int(part["hash"] or 0)  # Python's xor on negative ints is two's complement
    return {"rows": rows, "hash": digest}


def data_fingerprint(df: DataFrame) -> dict[str, Any]:
    """`fingerprint_aggregates` of every row and column of `df`, as its own pass."""
    return fingerprint_of([df.agg(*fingerprint_aggregates(df.columns)).first()])


def run_columns(key: str, label: str | None, extra: list[str], features: list[str]
                ) -> list[str]:
    """The columns selection and evaluation read from the staged rows (with `_ms_fold`)."""
    return [key, GROUP, *([LABEL] if label else []), *extra, *features]


def quote(column: str) -> str:
    """`column` as a Spark SQL identifier."""
    return "`" + column.replace("`", "``") + "`"


def versions() -> dict[str, Any]:
    import joblib
    import pyspark
    import scipy
    import sklearn

    return {**library_versions(), "pyspark_runtime": pyspark.__version__,
            "scikit-learn": sklearn.__version__, "scipy": scipy.__version__,
            "joblib": joblib.__version__}


def model_name(spec: ModelSpec) -> str:
    """The model id prefix: `randomforestclassifier`, `sklearn-histgradientboostingclassifier`."""
    if spec.engine == "sklearn":
        path = spec.algorithm if is_estimator_path(spec.algorithm) else spec.estimator
        return "sklearn-" + path.rpartition(".")[2].lower()
    return spec.algorithm.lower()


def check_algorithms(cfg: TrainSettings, n_classes: int) -> None:
    for cand in cfg.candidates():
        if is_estimator_path(cand.algorithm):
            continue
        algo = get_algorithm(cand.algorithm)
        if algo.binary_only and n_classes != 2:
            raise ConfigError(f"{algo.name} is binary only; the label has {n_classes} classes")
    if cfg.metric() in ("roc_auc", "pr_auc") and n_classes != 2:
        raise ConfigError(f"metric {cfg.metric()} needs a binary label ({n_classes} classes)")


# ------------------------------------------------------------------------ small tables
def plan_in_task(pre: Preflight, table: str | None, lake_root: str | None = None) -> Any:
    """The `split_task.TaskSplit` of a `--table` one task reads, splits and stages faster than
    Spark SQL (`train.prepare: auto`), or why Spark SQL prepares the rows instead (a string,
    which the manifest's `split.prepared_by` repeats). A table on a remote store qualifies
    when the lake is on the same one: tasks already reach the lake with pyarrow (its staged
    rows), while only Spark's Hadoop configuration may reach another store."""
    from medspark.spark.models.selection import BYTES_PER_VALUE
    from medspark.spark.models.split_task import numeric_columns, plan_task_split
    from medspark.uris import is_local, uri_scheme

    cfg = pre.cfg
    why = ("train.prepare: spark" if cfg.prepare != "auto" else
           "the lake's features, not a --table" if not table else
           f"train.aggregate: {pre.aggregate}" if pre.aggregate != "none" else
           "train.per_group" if cfg.per_group else
           "the table is on another store than the lake"
           if not is_local(table) and uri_scheme(table) != uri_scheme(lake_root or "") else None)
    if why or not table:
        return why
    import pyarrow.dataset as ds

    folder = Folder.at(table)
    try:
        dataset = ds.dataset(folder.path, filesystem=folder.fs, format="parquet")
    except (OSError, ValueError) as e:  # pyarrow's errors; Spark may still read it
        return f"pyarrow cannot open the table: {e}"
    schema = dataset.schema
    numeric = numeric_columns(schema)
    if numeric is None:
        return "a decimal, uint64 or float16 column"
    label, extra, reserved = _roles(pre, lake_mode=False)
    spec = SplitSpec(pre.key, cfg.group_col, label, cfg.task,
                     pick_features(numeric, cfg.features, reserved, lake_mode=False), extra,
                     cfg.test_size, cfg.selection.folds, cfg.seed, cfg.positive_label,
                     ERROR_COL if ERROR_COL in schema.names else None)
    return plan_task_split(table, folder, dataset, spec, cfg.sklearn_max_rows,
                           cfg.task_memory_mb, BYTES_PER_VALUE)


# -------------------------------------------------------------------------------------- job
def run_train(spark: SparkSession, settings: Settings, lake_root: str | None = None,
              table: str | None = None, label: str | None = None, task: str | None = None,
              id_col: str | None = None, group_col: str | None = None,
              train: TrainSettings | None = None, as_of: int | str | None = None) -> dict:
    """Select, refit and evaluate a model; write `models/<model_id>/` and a run manifest.

    `lake_root` is required (models/ and _runs/ live there); `table` trains on any Parquet
    table instead of the lake's features/. Arguments left None come from `train:` settings.
    """
    from medspark.spark.models.selection import task_modules
    from medspark.spark.models.tasks import Stopwatch, warm_workers
    from medspark.spark.runs import job_run

    clock = Stopwatch()
    pre = preflight(settings, lake_root, table, train=train, as_of=as_of, task=task,
                    label=label, id_col=id_col, group_col=group_col)
    lake = Lake(lake_root)
    with job_run(lake, "train") as run:
        # while the JVM reads and counts the rows, assigns the folds and stages the rows
        in_task = plan_in_task(pre, table, lake_root)
        why = in_task if isinstance(in_task, str) else None
        # a core left free for the task that splits the table, which then needs no wait
        warming = warm_workers(spark, task_modules(pre.cfg), spare=why is None)
        try:
            if why is None:
                from medspark.spark.models.split_task import SplitDeclined

                try:
                    return Job(spark, settings, lake, run, pre.cfg, None, clock).run(in_task)
                except SplitDeclined as e:
                    why = f"the task declined the table: {e}"
                    log.warning("train: %s", why)
            log.info("train: Spark SQL prepares the rows (%s)", why)
            data = prepare(spark, pre, None if table else lake, table, as_of)
            clock.lap("prepare")
            if pre.cfg.per_group:
                from medspark.spark.models.per_group import train_per_group

                return train_per_group(spark, settings, lake, run, pre.cfg, data)
            return Job(spark, settings, lake, run, pre.cfg, data, clock, why).run()
        except BaseException:
            warming.cancel()
            raise
        finally:
            warming.join()


class Job:
    """One train run after `prepare`: split, select, refit, evaluate, write."""

    def __init__(self, spark: SparkSession, settings: Settings, lake: Lake, run: Any,
                 cfg: TrainSettings, data: TrainData | None, clock: Any,
                 why_spark_sql: str | None = None) -> None:
        self.spark, self.settings, self.lake, self.run_ = spark, settings, lake, run
        self.cfg, self.data = cfg, data
        self.clock = clock  # a Stopwatch started before prepare (its first lap)
        self.balance: dict[str, dict[str, int]] | None = None  # counted by the split task
        self.why_spark_sql = why_spark_sql  # why no task split the table (the manifest says)
        self.lap = self.clock.lap

    def run(self, in_task: Any = None) -> dict:
        """Split, stage, select, refit, evaluate, write; `in_task`: a `TaskSplit` (no
        `prepare` ran: one task reads, splits and stages the table)."""
        stage = Folder.at(self.lake.staging_path(self.run_.run_id, "rows"))
        folds = groups = None
        try:
            if in_task is not None:
                folds, groups, split, fingerprint = self._split_in_task(in_task, stage)
            else:
                folds, groups, split, fingerprint = self._split_in_spark(stage)
            self.framed = folds.framed
            self.lap("split_and_stage")
            return self._select_and_fit(folds, groups, split, fingerprint, self._classes())
        finally:
            if groups is not None:
                groups.unpersist()
            if self.data is not None and self.data.aggregate != "none":
                self.data.frame.unpersist()
            if folds is not None and folds.stage_folder is not None:
                folds.stage_folder.remove()
            else:
                stage.remove()

    def _classes(self) -> int:
        return len(self.data.labels or []) if self.cfg.task == "classification" else 0

    def _columns(self) -> list[str]:
        data = self.data
        return run_columns(data.key, data.label, data.extra, data.features)

    def _split_in_spark(self, stage: Folder) -> tuple[Any, DataFrame, dict[str, Any],
                                                      dict[str, int]]:
        from medspark.spark.models.folds import FoldSet, assign_folds

        cfg, data = self.cfg, self.data
        check_algorithms(cfg, self._classes())
        framed, groups, split = assign_folds(
            data.frame, group=data.group, key=data.key,
            stratify=cfg.task == "classification", test_size=cfg.test_size,
            k=cfg.selection.folds, seed=cfg.seed, labels=data.labels)
        folds = FoldSet(framed, cfg.selection.folds, data.key, data.features, self._columns(),
                        {}, stage, observe=fingerprint_aggregates(data.hashed))
        try:
            folds.stage()  # the one pass over every row: the fingerprint comes with it
        except BaseException:
            groups.unpersist()
            raise
        split["prepared_by"] = "Spark SQL" + (f" ({self.why_spark_sql})"
                                              if self.why_spark_sql else "")
        return folds, groups, split, fingerprint_of([folds.observed])

    def _split_in_task(self, plan: Any, stage: Folder) -> tuple[Any, DataFrame,
                                                                 dict[str, Any], dict[str, int]]:
        from medspark.spark.models.folds import FoldSet
        from medspark.spark.models.split_task import split_in_task
        from medspark.spark.models.tasks import read_staged

        cfg, spec = self.cfg, plan.spec
        done = split_in_task(self.spark, plan, stage,
                             run_columns(spec.key, spec.label, spec.extra, spec.features))
        self.data = TrainData(None, spec.key, spec.group, spec.label, spec.features, spec.extra,
                              "none", done.labels, {"table": plan.where}, dict(done.counts), [])
        self.balance = done.balance
        self.lap("prepare")
        check_algorithms(cfg, self._classes())
        try:
            split = split_counts(done.cells, cfg.selection.folds, spec.group,
                                 cfg.task == "classification", done.labels)
        except SplitError as e:
            raise ConfigError(str(e)) from None
        split["prepared_by"] = "one Spark task (pyarrow): the table fits a task"
        folds = FoldSet(read_staged(self.spark, done.staged, done.schema), cfg.selection.folds,
                        spec.key, spec.features, self._columns(), {}, stage,
                        staged=done.staged, observed=done.fingerprint)
        groups = self.spark.read.schema(f"{GROUP} string, {FOLD} int").parquet(done.groups_file)
        return folds, groups, split, done.fingerprint

    def _select_and_fit(self, folds: Any, groups: DataFrame, split: dict[str, Any],
                        fingerprint: dict[str, Any], n_classes: int) -> dict:
        from medspark.spark.models import impute as imp
        from medspark.spark.models.evaluation import evaluate
        from medspark.spark.models.selection import TaskBudget, cross_validate, plan_specs
        from medspark.spark.models.tasks import threads_of

        cfg, data = self.cfg, self.data
        n_train = sum(v for f, v in split["rows_by_fold"].items() if int(f) >= 0)
        budget = TaskBudget(n_train, len(data.features) + len(data.extra),
                            cfg.sklearn_max_rows, cfg.task_memory_mb)
        specs = plan_specs(cfg, budget)
        plan = cfg.missing_plan([data.key], [GROUP, data.group, LABEL, FOLD, *data.extra,
                                             *([data.label] if data.label else [])])
        fit_sets: list[int | None] = [None, *range(folds.k)]
        try:
            if budget.fits:  # fitted where they are used (FoldSet.plan)
                folds.plan = plan
                how = {"fitted_by": "spark_tasks", "statistics": "exact (pandas, on the staged "
                       "training split: in the task that fits each fold and in the refit task)"}
            else:
                folds.imputers = imp.fit_by_aggregates(folds.framed, plan, fit_sets, data.key,
                                                       cfg.seed, cfg.impute_sample_rows)
                how = {"fitted_by": "spark_aggregates",
                       "statistics": f"means exact; medians exact on about "
                                     f"{cfg.impute_sample_rows} rows drawn by a seeded hash "
                                     f"of the row key (every row when fewer; the same on "
                                     f"every run), percentile_approx where that sample "
                                     f"holds no value of a column; model rules on at most "
                                     f"{cfg.impute_sample_rows} rows drawn the same way"}
        except ValueError as e:
            raise ConfigError(f"train.missing: {e}") from None
        self.lap("imputers")
        ctx = ModelContext(cfg.task, n_classes, data.labels, cfg.standardize, cfg.seed,
                           cfg.metric(), threads_of(self.spark))
        board = cross_validate(specs, ctx, folds)
        best = board.best()
        self.lap("selection")
        engine = engine_class(best.engine)
        rows = folds.training_rows(in_task=engine.in_tasks)
        if engine.in_tasks and split["rows_by_fold"]["-1"] <= cfg.eval_max_rows:
            rows.held_out = HeldOut(list(data.features))  # scored in the refit task
        try:
            model = engine(best, ctx).fit(rows)
        finally:
            folds.release_all()
        self.lap("refit")
        final = model.imputer or folds.imputer(None)
        evaluation = evaluate(model, folds.framed.where(F.col(FOLD) == -1), final,
                              data.features, data.key, n_boot=cfg.n_boot, seed=cfg.seed,
                              max_rows=cfg.eval_max_rows)
        self.lap("evaluation")
        return self._write(model, board, evaluation, final, how, groups, split, fingerprint)

    def _write(self, model: Any, board: Any, evaluation: Any, final: Any, how: dict[str, Any],
               groups: DataFrame, split: dict[str, Any], fingerprint: dict[str, Any]) -> dict:
        from medspark.spark.models.artifacts import weights_doc, write_folder

        cfg, data, best = self.cfg, self.data, model.spec
        model_id = (f"{model_name(best)}-"
                    f"{sha({'config': cfg.hashed(), 'data': fingerprint, 'seed': cfg.seed})}")
        folder = Folder.at(self.lake.path("models")).child(model_id)
        train_report = final.train_report
        counts = {**data.counts, "rows": fingerprint["rows"],
                  "train_rows": sum(v for f, v in split["rows_by_fold"].items() if int(f) >= 0),
                  "train_rows_rejected": train_report.rows_dropped if train_report else 0,
                  **evaluation.counts}
        row = board.best_row()
        best_doc = {"algorithm": best.algorithm, "kind": best.engine,
                    "estimator": best.estimator, "params": best.params,
                    "cv_mean": num(row["mean"]), "cv_sd": num(row["sd"])}
        weights = model.feature_weights()
        feats = model.features
        metrics_doc = {
            "model_id": model_id, "task": cfg.task, "algorithm": best.algorithm,
            "kind": best.engine, "estimator": best.estimator, "params": best.params,
            "selection": {"metric": cfg.metric(), "folds": cfg.selection.folds,
                          "cv_mean": best_doc["cv_mean"], "cv_sd": best_doc["cv_sd"],
                          "scores": "medspark.models.scores (one definition for every "
                                    "engine)"},
            "test": evaluation.metrics, "counts": counts, "evaluation": evaluation.sampling,
            "missing": {"train": train_report.model_dump() if train_report else None,
                        "test": evaluation.report.model_dump(),
                        "imputer_steps": final.describe(), "imputer": how},
        }
        config_doc = cfg.model_dump(mode="json")
        metadata = {
            "model_id": model_id, "task": cfg.task, "algorithm": best.algorithm,
            "estimator": best.estimator, "engine_note": best.note, "params": best.params,
            "label_col": data.label, "labels": data.labels, "group_col": data.group,
            "key_col": data.key, "id_col": cfg.id_col, "aggregate": data.aggregate,
            "series_col": cfg.series_col, "input_features": data.features, "features": feats,
            "extra_columns": data.extra, "seed": cfg.seed, "config": config_doc,
            "config_hash": sha(config_doc), "data_fingerprint": fingerprint,
            "source": data.source, "split": split, "train_run_id": self.run_.run_id,
            "snapshot": {"counts": counts, "label_balance": self._balance()},
            "imputer": how, "model": model.describe(), "versions": versions(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "weights": weights_doc(weights, feats),
        }
        split_table = groups.select(F.col(GROUP).alias("group"), F.col(FOLD).alias("fold"))

        def plots(target: Folder) -> list[str]:
            return write_plots(target, evaluation.sample, cfg.task, data.labels, weights, feats)

        meta = write_folder(folder, model=model, imputer=final, leaderboard=board.frame,
                            metrics=metrics_doc, metadata=metadata, split=split_table,
                            plots=plots)
        self.lap("write")
        return self.run_.manifest(
            self.spark, self.settings, counts, {"model": str(folder)}, model_id=model_id,
            task=cfg.task, split=split, best=best_doc,
            test_metrics={k: v.get("value") for k, v in evaluation.metrics.items()},
            evaluation=evaluation.sampling, imputer=how, seconds=self.clock.laps,
            selection=[{"algorithm": s.algorithm, "kind": s.engine, "estimator": s.estimator,
                        "params": s.params, "note": s.note, "mean_fit_seconds": num(t)}
                       for s, t in zip(board.specs, board.fit_seconds, strict=True)],
            plots=meta.get("plots"))

    def _balance(self) -> dict[str, dict[str, int]] | None:
        """Rows per class on each side of the held-out split (an aggregate, unless the task
        that split the table counted them)."""
        labels = self.data.labels
        if labels is None:
            return None
        if self.balance is not None:
            return self.balance
        out: dict[str, dict[str, int]] = {"train": {}, "test": {}}
        side = F.when(F.col(FOLD) >= 0, "train").otherwise("test")
        for r in self.framed.groupBy(side.alias("s"), LABEL).count().collect():
            out[r["s"]][str(labels[int(r[LABEL])])] = int(r["count"])
        return {s: dict(sorted(v.items())) for s, v in out.items()}
