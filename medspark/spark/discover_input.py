"""The discover job's input: one prepared, cached frame and the roles of its columns.

Lake mode reads `features/` (one feature set; the rows already carry the catalog's attributes,
and any the settings want that they lack are joined from `catalog/` by `image_id`). Table mode
reads a Parquet table. Either way the prepared frame has: `_id`, `_group` (strings), the label
(string for classification, double for regression), `_date` (date), `_in_batch` (true: the
newest batch, false: the reference, null: neither), metadata columns as strings and feature
columns as doubles (NaN and infinities as null). One aggregate pass gives the per-feature
statistics (count, mean, SD, quartiles, rule bins) every analysis shares.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.config import ConfigError
from medspark.discover.config import DiscoverSettings
from medspark.discover.request import DiscoverRequest
from medspark.lake import Lake
from medspark.schema import CATALOG_ARROW
from medspark.spark.discover_bins import J, V, accuracy_for, melt
from medspark.spark.train import NUMERIC, choose_features

log = logging.getLogger(__name__)

ID, GROUP, DATE, IN_BATCH, LABEL = "_id", "_group", "_date", "_in_batch", "_label"
CATEGORICAL = (T.StringType, T.BooleanType)
LAKE_METADATA = ("modality", "body_part", "manufacturer", "pixel_spacing_mm")
# features/ columns that are neither features nor metadata
LAKE_RESERVED = set(CATALOG_ARROW.names) | {
    "ingest_date", "feature_set", "feature_error", "features", "segment_error", "mask_source",
    "augment_index", "preprocess_error", "height", "width", "channels", "dtype"}
MAX_CATEGORIES = 50  # a metadata column with more values is an identifier, not a category
MAX_CLASSES = 10  # a numeric label with at most this many values is a class label


@dataclass
class FeatureStats:
    """Per-feature statistics over all rows (nulls excluded)."""

    count: dict[str, int]
    mean: dict[str, float]
    sd: dict[str, float]
    q1: dict[str, float]
    median: dict[str, float]
    q3: dict[str, float]
    rule_cuts: dict[str, list[float]]

    def iqr(self, name: str) -> float:
        return self.q3[name] - self.q1[name]


@dataclass
class DiscoverInput:
    """The prepared frame (cached) and what its columns mean."""

    df: DataFrame
    name: str
    source: dict[str, Any]
    features: list[str]
    metadata: list[str]
    rows: int
    groups: int | None
    task: str | None  # classification / regression / None (no label)
    classes: list[str] = field(default_factory=list)  # classification: sorted label values
    positive: str | None = None  # binary: the positive class
    has_date: bool = False
    batch: dict[str, Any] | None = None  # {"batch": [...], "reference": str, ...}
    stats: FeatureStats | None = None
    dropped: dict[str, list[str]] = field(default_factory=dict)
    id_col: str = ""
    group_col: str | None = None
    label_col: str | None = None

    @property
    def has_group(self) -> bool:
        return self.group_col is not None

    def label_items(self) -> str:
        """The prefix of label items in rules: `<label>=`."""
        return f"{self.label_col}="

    def release(self) -> None:
        """Drop the cached input. Called in a `finally`: a failure here (e.g. the Spark
        context already stopped by the error being raised) is logged, never raised over the
        error that matters."""
        try:
            self.df.unpersist()
        except Exception as e:  # noqa: BLE001 - see the docstring
            log.warning("discover: could not release the cached input: %s",
                        str(e).splitlines()[0] if str(e) else type(e).__name__)


def read_features(spark: SparkSession, lake: Lake, request: DiscoverRequest) -> DataFrame:
    """The chosen feature set's table of the lake (current snapshot)."""
    return lake.read(spark, request.features_table())


def raw_frame(spark: SparkSession, request: DiscoverRequest, cfg: DiscoverSettings
              ) -> tuple[DataFrame, dict[str, Any]]:
    """The input table before preparation, and a description of it."""
    if request.table:
        try:
            return spark.read.parquet(request.table), {"table": request.table}
        except Exception as e:  # noqa: BLE001 - AnalysisException
            raise ConfigError(f"table {request.table} cannot be read: {e}") from None
    lake = Lake(request.lake)
    if request.feature_set is None:
        request.validate(cfg)
    df = read_features(spark, lake, request)
    wanted = [c for c in (*LAKE_METADATA, *cfg.metadata, cfg.group_col, cfg.date_col)
              if c and c not in df.columns]
    joined: list[str] = []
    if wanted and lake.exists("catalog"):
        catalog = lake.read(spark, "catalog")
        joined = [c for c in dict.fromkeys(wanted) if c in catalog.columns]
        if joined:
            attrs = catalog.select("image_id", *joined).dropDuplicates(["image_id"])
            df = df.join(attrs, "image_id", "left")
    table = request.features_table()
    return df, {"lake": lake.root, "feature_set": request.feature_set,
                "features": lake.path(table), "features_version": lake.reads.get(table),
                "catalog_version": lake.reads.get("catalog"), "joined_from_catalog": joined}




def _choose_metadata(df: DataFrame, cfg: DiscoverSettings, reserved: set[str],
                     features: list[str], lake_mode: bool) -> list[str]:
    if cfg.metadata:
        return list(cfg.metadata)
    types = {f.name: f.dataType for f in df.schema.fields}
    out = [c for c in LAKE_METADATA if c in types] if lake_mode else []
    exclude = (LAKE_RESERVED if lake_mode else set()) | reserved | set(features)
    out += [f.name for f in df.schema.fields
            if isinstance(f.dataType, CATEGORICAL) and f.name not in exclude]
    return list(dict.fromkeys(out))


def _metadata_col(df: DataFrame, name: str) -> Column:
    dtype = df.schema[name].dataType
    if isinstance(dtype, T.ArrayType):  # pixel spacing: its first element, 2 decimals
        return F.format_number(F.element_at(F.col(name), 1).cast("double"), 2)
    if isinstance(dtype, T.BooleanType):
        return F.when(F.col(name), "true").when(~F.col(name), "false")
    return F.col(name).cast("string")


def _double(df: DataFrame, name: str) -> Column:
    """The column as double (no expression when it already is: wide plans are re-analysed on
    every action). NaN and infinities are treated as missing where values are used."""
    col = F.col(name)
    return col if isinstance(df.schema[name].dataType, T.DoubleType) else col.cast("double")


def prepare(spark: SparkSession, request: DiscoverRequest, cfg: DiscoverSettings
            ) -> DiscoverInput:
    """Read, select, type and cache the input; compute the shared per-feature statistics."""
    raw, source = raw_frame(spark, request, cfg)
    lake_mode = request.table is None
    if cfg.id_col not in raw.columns:
        raise ConfigError(f"id column {cfg.id_col!r} not in the input")
    present = set(raw.columns)

    def have(col: str | None) -> str | None:
        return col if col and col in present else None

    label, group, date, batch = (have(cfg.label), have(cfg.group_col), have(cfg.date_col),
                                 have(cfg.batch_col))
    reserved = {c for c in (cfg.id_col, label, group, date, batch) if c}
    features = choose_features(raw, list(cfg.features or []), sorted(reserved), lake_mode,
                               setting="discover.features")
    metadata = [m for m in _choose_metadata(raw, cfg, reserved, features, lake_mode)
                if m in present]
    if "feature_error" in raw.columns:
        raw = raw.where(F.col("feature_error").isNull())
    if lake_mode and request.dates and batch:
        newest = max(request.dates).isoformat()
        raw = raw.where(F.col(batch).cast("string") <= newest)

    row_id = F.col(cfg.id_col).cast("string")
    if lake_mode and "roi_name" in present:  # one row per image and ROI
        row_id = F.concat_ws("#", row_id, F.col("roi_name"))
    cols = [row_id.alias(ID),
            (F.col(group).cast("string") if group else F.lit(None).cast("string")).alias(GROUP),
            (F.to_date(F.col(date)) if date else F.lit(None).cast("date")).alias(DATE)]
    label_type = None
    if label:
        cols.append(F.col(label).alias(LABEL))
    if batch:
        cols.append(F.col(batch).alias("_batch_raw"))
    cols += [_metadata_col(raw, m).alias(m) for m in metadata]
    cols += [_double(raw, f).alias(f) for f in features]
    df = raw.select(*cols)
    if label:
        df = df.where(F.col(LABEL).isNotNull())

    if label:
        label_type = raw.schema[label].dataType
    # rows, patients, label values and categorical cardinalities: one small aggregate
    aggs = [F.count(F.lit(1)).alias("_rows"),
            (F.countDistinct(GROUP) if group else F.lit(None)).alias("_groups")]
    if label:
        aggs.append(F.approx_count_distinct(LABEL).alias("_labels"))
    aggs += [F.approx_count_distinct(m).alias(f"_card{i}") for i, m in enumerate(metadata)]
    first = df.agg(*aggs).first().asDict()
    rows = int(first["_rows"])
    if rows == 0:
        raise ConfigError("the input has no rows" + (" with a label" if label else ""))
    task, classes, positive = _label_task(df, cfg, label, label_type, first.get("_labels"))
    if task == "classification":
        df = df.withColumn(LABEL, F.col(LABEL).cast("string"))
    elif task == "regression":
        df = df.withColumn(LABEL, F.col(LABEL).cast("double"))
    batch_info = None
    if batch:
        df, batch_info = _mark_batch(df, request, batch, raw.schema[batch].dataType)
    df = df.select(*[c for c in df.columns if c not in ("_batch_raw",)])
    # on disk, not in the heap: the aggregates' buffers (percentile summaries) live on the
    # JVM heap outside Spark's memory accounting and need the room
    df = df.persist(StorageLevel.DISK_ONLY)

    # per feature: count, mean, SD, quartiles and rule cuts, one narrow group-by (long form)
    cuts = [i / cfg.rules.bins for i in range(1, cfg.rules.bins)]
    probs = sorted({0.25, 0.5, 0.75, *cuts})
    per = {int(r[J]): r for r in melt(df, features, []).groupBy(J).agg(
        F.count(V).alias("n"), F.avg(V).alias("mean"), F.stddev_samp(V).alias("sd"),
        F.percentile_approx(V, probs, accuracy_for(cfg.rules.bins)).alias("q")).collect()}
    dropped: dict[str, list[str]] = {
        "constant_or_empty_features": [f for j, f in enumerate(features)
                                       if j not in per or not (per[j]["sd"] or 0) > 0],
        "high_cardinality_metadata": [m for i, m in enumerate(metadata)
                                      if first[f"_card{i}"] > MAX_CATEGORIES],
    }
    kept = [(j, f) for j, f in enumerate(features)
            if f not in dropped["constant_or_empty_features"]]
    metadata = [m for m in metadata if m not in dropped["high_cardinality_metadata"]]
    if not kept:
        df.unpersist()
        raise ConfigError("every feature column is constant or empty")
    features = [f for _, f in kept]
    pos = {p: i for i, p in enumerate(probs)}

    def q(j: int, p: float) -> float:
        return float(per[j]["q"][pos[p]])

    stats = FeatureStats(
        count={f: int(per[j]["n"]) for j, f in kept},
        mean={f: float(per[j]["mean"]) for j, f in kept},
        sd={f: float(per[j]["sd"]) for j, f in kept},
        q1={f: q(j, 0.25) for j, f in kept}, median={f: q(j, 0.5) for j, f in kept},
        q3={f: q(j, 0.75) for j, f in kept},
        rule_cuts={f: [q(j, c) for c in cuts] for j, f in kept})
    return DiscoverInput(
        df=df, name=request.input_name(), source=source, features=features, metadata=metadata,
        rows=rows, groups=int(first["_groups"]) if group else None, task=task, classes=classes,
        positive=positive, has_date=date is not None, batch=batch_info, stats=stats,
        dropped={k: v for k, v in dropped.items() if v}, id_col=cfg.id_col, group_col=group,
        label_col=label)


def _label_task(df: DataFrame, cfg: DiscoverSettings, label: str | None, dtype,
                n_values: int | None) -> tuple[str | None, list[str], str | None]:
    """(task, sorted classes, positive class) of the label column."""
    if not label:
        return None, [], None
    task = cfg.task
    if task == "auto":
        numeric = isinstance(dtype, NUMERIC)
        task = "regression" if numeric and (n_values or 0) > MAX_CLASSES else "classification"
    if task == "regression":
        if not isinstance(dtype, NUMERIC):
            raise ConfigError(f"label {label!r} is not numeric: it cannot be a regression target")
        return task, [], None
    counts = {str(r[0]): int(r[1]) for r in
              df.groupBy(F.col(LABEL).cast("string")).count().limit(1000).collect()}
    if len(counts) > 100:
        raise ConfigError(f"label {label!r} has more than 100 classes; set discover.task=regression"
                          " or choose another label")
    classes = sorted(counts)
    if len(classes) < 2:
        return None, classes, None  # a constant label: nothing to test against
    positive = None
    if len(classes) == 2:
        if cfg.positive_label is not None:
            positive = str(cfg.positive_label).lower() if isinstance(dtype, T.BooleanType) \
                else str(cfg.positive_label)
            if positive not in classes:
                raise ConfigError(f"discover.positive_label {cfg.positive_label!r} not among "
                                  f"{classes}")
        elif set(classes) in ({"0", "1"}, {"false", "true"}):
            positive = classes[1]
        else:
            positive = min(classes, key=lambda c: (counts[c], c))
    return "classification", classes, positive


def _mark_batch(df: DataFrame, request: DiscoverRequest, batch: str, dtype
                ) -> tuple[DataFrame, dict[str, Any] | None]:
    """`_in_batch`: true for the newest batch (or --date), false for earlier rows."""
    raw = F.col("_batch_raw")
    if request.dates:
        values = [d.isoformat() for d in request.dates]
        in_batch = raw.cast("string").isin(values)
        before = raw.cast("string") < min(values)
    else:
        newest = df.agg(F.max(raw)).first()[0]
        if newest is None:
            return df.withColumn(IN_BATCH, F.lit(None).cast("boolean")), None
        values = [str(newest)]
        in_batch = raw == F.lit(newest)
        before = raw < F.lit(newest)
    df = df.withColumn(IN_BATCH, F.when(in_batch, True).when(before, False))
    return df, {"column": batch, "batch": values, "reference": f"{batch} < {min(values)}"}
