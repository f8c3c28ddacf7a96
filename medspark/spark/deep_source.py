"""The rows deep learning reads and writes, through the lake API.

Training processes are not Spark tasks: they stream a table's Parquet files with pyarrow, so
`read_lake` hands back the snapshot's file list with the rows (`lake.snapshot(t).files`), and
`lake.read` records the version read for the manifest.

Sources (`deep.source`):
- `preprocessed`: the table `preprocessed/pipeline=<hash of the imaging config>`: originals only
  (`augment_index == 0`; deep training augments on the fly), rows with a `preprocess_error` or
  no pixels left out and counted;
- `pixels`: `pixels/` as ingested joined with the catalog's ids and labels (image planes only,
  one catalog row per image, `deep.modalities` if set).

Embeddings go to their own table, `features/feature_set=deep-<model id>` (`write_features`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from medspark.config import ConfigError, Settings
from medspark.lake import Lake, table_of

PLANE_COLUMNS = ("height", "width", "channels", "dtype", "data")
NOT_METADATA = frozenset({*PLANE_COLUMNS, "mask", "preprocess_error", "segment_error",
                          "pipeline_hash", "augment_index", "source_image_id", "augment_seed",
                          "rows", "cols", "pipeline"})


@dataclass
class LakeRows:
    """A table's rows (partition columns included), its Parquet files and its version."""

    frame: DataFrame
    files: list[str]
    table: str
    version: int | None = None


def read_lake(spark: SparkSession, lake: Lake, table: str) -> LakeRows:
    """A lake table's current snapshot: rows and files (ConfigError naming the job that writes
    the table when it does not exist)."""
    snap = lake.snapshot(table)
    frame = lake.read(spark, table, snap=snap)
    return LakeRows(frame, list(snap.files), table, snap.version)


def write_features(spark: SparkSession, df: DataFrame, lake: Lake, feature_set: str,
                   run_id: str, job: str) -> tuple[str, dict[str, Any]]:
    """Commit `df` to the feature set's own table `features/feature_set=<name>` in one commit
    (images already in it are not added again: a re-run embeds only new images). Returns the
    table and the commit as the lake reports it."""
    if "roi_name" not in df.columns:  # part of the features tables' key
        df = df.withColumn("roi_name", F.lit(None).cast("string"))
    table = table_of("features", feature_set)
    return table, lake.write_table(spark, df, table, run_id, job).as_dict()


@dataclass
class Source:
    """Plane rows (metadata and pixel columns), the files holding their pixels, and which rows
    are usable (`usable`: a Column, True when unset). `planes` are the usable rows."""

    all_planes: DataFrame
    files: list[str]
    metadata: list[str]
    description: dict[str, Any] = field(default_factory=dict)
    usable: Any = None

    @property
    def planes(self) -> DataFrame:
        return self.all_planes if self.usable is None else self.all_planes.where(self.usable)


def load_source(spark: SparkSession, lake: Lake, settings: Settings | None, source: str,
                modalities: list[str] | None = None, pipeline_hash: str | None = None
                ) -> Source:
    """The plane rows of `source` (`preprocessed` / `pixels`); see the module docstring.
    `pipeline_hash`: that preprocessed/ table instead of the settings' imaging config's."""
    if source == "preprocessed":
        from medspark.spark.imaging import pipeline_hash as current_hash

        if pipeline_hash is None and settings is None:
            raise ValueError("load_source needs settings or a pipeline_hash")
        digest = pipeline_hash or current_hash(settings)
        rows = read_lake(spark, lake, table_of("preprocessed", digest))
        frame = rows.frame
        usable = F.col("data").isNotNull()
        if "preprocess_error" in frame.columns:
            usable &= F.col("preprocess_error").isNull()
        if "augment_index" in frame.columns:
            frame = frame.where(F.coalesce(F.col("augment_index"), F.lit(0)) == 0)
        desc = {"table": "preprocessed", "pipeline_hash": digest, "version": rows.version}
        meta = [c for c in frame.columns if c not in NOT_METADATA]
        return Source(frame, rows.files, meta, desc, usable)
    if source != "pixels":
        raise ConfigError(f"deep.source must be preprocessed or pixels, got {source!r}")
    catalog = read_lake(spark, lake, "catalog").frame
    pixels = read_lake(spark, lake, "pixels")
    catalog = catalog.where(F.col("plane_index").isNotNull())
    if modalities:
        catalog = catalog.where(F.col("modality").isin(list(modalities)))
    meta = [f.name for f in catalog.schema.fields
            if not isinstance(f.dataType, MapType) and f.name not in NOT_METADATA
            and f.name not in ("channels", "dtype")]
    # one catalog row per image (the same bytes under two paths are one image); pixels/ is
    # keyed by image_id already
    planes = catalog.select(*meta).dropDuplicates(["image_id"]).join(
        pixels.frame.select("image_id", *PLANE_COLUMNS), "image_id")
    return Source(planes, pixels.files, meta, {"table": "pixels", "version": pixels.version,
                                               "modalities": list(modalities or [])})


def series_rows(planes: DataFrame, series_key: str, extra: list[str]) -> DataFrame:
    """One row per series: `extra` columns (their max over the slices) and the slices in
    (slice_position, plane_index, image_id) order as parallel arrays `image_ids`, `heights`,
    `widths`, `channels`, `dtypes`, `datas`, plus `n_slices`."""
    pos = F.coalesce(F.col("slice_position"), F.lit(0.0)) if "slice_position" in \
        planes.columns else F.lit(0.0)
    plane = F.coalesce(F.col("plane_index"), F.lit(0)) if "plane_index" in planes.columns \
        else F.lit(0)
    s = F.struct(pos.alias("p"), plane.alias("i"), F.col("image_id").alias("id"),
                 F.col("height").alias("h"), F.col("width").alias("w"),
                 F.col("channels").alias("c"), F.col("dtype").alias("t"),
                 F.col("data").alias("d"))
    grouped = planes.groupBy(series_key).agg(
        *[F.max(c).alias(c) for c in extra], F.sort_array(F.collect_list(s)).alias("_s"))
    return grouped.select(
        series_key, *extra, F.col("_s.id").alias("image_ids"), F.col("_s.h").alias("heights"),
        F.col("_s.w").alias("widths"), F.col("_s.c").alias("channels"),
        F.col("_s.t").alias("dtypes"), F.col("_s.d").alias("datas"),
        F.size("_s").alias("n_slices"))
