"""The preprocess and features jobs: lake tables in, derived lake tables out.

Both read the ingested planes (`catalog` joined with `pixels`, current Delta snapshots), run
medspark's `pyspark.ml` stages (one `mapInPandas` pass per stage) and commit one Delta commit per
table written, keyed by the hash of the configuration that produced the rows and the image: a
changed config never touches another's rows, and only images not yet processed for this
configuration are processed (an anti-join on the table's current version), so a re-run commits
nothing new and a nightly run processes that night's new images only (`--date` narrows further).

    preprocessed/pipeline=<hash>        images (+ mask) after segment + preprocess (+ augment)
    masks/source=segment-<hash>         the segment steps' masks
    features/feature_set=<hash>         features + vector per plane (and ROI)

(one Delta table per configuration, each partitioned by ingest_date)
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from medspark.config import Settings
from medspark.jsonable import short_hash
from medspark.lake import Lake, table_of
from medspark.ml.stages import FeatureExtractor, ImagePreprocessor, Segmenter
from medspark.spark.runs import count_by, job_run, reason_of

log = logging.getLogger(__name__)
PIXEL_COLUMNS = ("height", "width", "channels", "dtype", "data")
HASH_CHARS = 16



def _dates(df: DataFrame, dates: list[dt.date] | None) -> DataFrame:
    return df.where(F.col("ingest_date").isin(list(dates))) if dates else df


def planes_frame(spark: SparkSession, lake: Lake, dates: list[dt.date] | None = None,
                 modalities: list[str] | None = None) -> DataFrame:
    """Ingested image planes: catalog columns (no header map) joined with their pixels."""
    catalog = _dates(lake.read(spark, "catalog"), dates).where(F.col("plane_index").isNotNull())
    catalog = catalog.select(*[f.name for f in catalog.schema.fields
                               if not isinstance(f.dataType, MapType)
                               and f.name not in ("rows", "cols", "channels", "dtype")])
    if modalities:
        catalog = catalog.where(F.col("modality").isin(modalities))
    # one catalog row per image: the same bytes under two paths are one image
    catalog = catalog.dropDuplicates(["image_id"])
    pixels = lake.read(spark, "pixels").select("image_id", *PIXEL_COLUMNS) \
        .dropDuplicates(["image_id"])
    return catalog.join(pixels, "image_id")


def not_yet_done(spark: SparkSession, lake: Lake, frame: DataFrame, table: str) -> DataFrame:
    """The rows of `frame` whose image has no row yet in `table` (the configuration's own
    table, current version). Call it on the frame as read, before any Python transform: the
    check below scans only the ids."""
    if not lake.exists(table):
        return frame
    done = lake.read(spark, table).select("image_id").distinct()
    todo = frame.join(done, "image_id", "left_anti")
    # a re-run of a finished night: an id scan finds nothing to do, and the empty plan that
    # follows reads no pixels (Spark turns `limit(0)` into an empty relation)
    if todo.select("image_id").isEmpty():
        return todo.limit(0)
    return todo


def output(lake: Lake, table: str) -> dict:
    """A manifest's description of one table written: path, version, rows."""
    return {"table": lake.path(table), **lake.commits.get(table, {})}


def preprocessor(settings: Settings) -> ImagePreprocessor:
    img = settings.imaging
    return ImagePreprocessor(segment=img.segment, preprocess=img.preprocess,
                             augment=img.augment or "")


def pipeline_hash(settings: Settings) -> str:
    """Names the preprocessed/ partition: the steps and the images they apply to."""
    img = settings.imaging
    return short_hash({"processing": img.processing().hash(),
                        "modalities": sorted(img.modalities)})


def run_preprocess(spark: SparkSession, settings: Settings, lake_root: str,
                   dates: list[dt.date] | None = None, run_id: str | None = None,
                   lake: Lake | None = None) -> dict:
    """segment + preprocess (+ augment) the planes not yet processed by this imaging config;
    commits preprocessed/ (and masks/ when there are segment steps)."""
    lake = lake or Lake(lake_root)
    digest = pipeline_hash(settings)
    with job_run(lake, "preprocess", run_id) as run:
        frame = planes_frame(spark, lake, dates, settings.imaging.modalities or None)
        table, mask_table = table_of("preprocessed", digest), table_of(
            "masks", f"segment-{digest}")
        frame = not_yet_done(spark, lake, frame, table)
        out = preprocessor(settings).transform(frame).persist(StorageLevel.DISK_ONLY)
        try:
            log.info("preprocess %s: pipeline %s over %s", run.run_id, digest, lake.root)
            counts = out.agg(
                F.count(F.lit(1)).alias("rows"),
                F.count(F.when(F.col("augment_index") == 0, 1)).alias("images"),
                F.count(F.when(F.col("augment_index") > 0, 1)).alias("augmented"),
                F.count("preprocess_error").alias("errors"),
                F.count("mask").alias("with_mask"),
            ).first().asDict()
            counts["errors_by_reason"] = count_by(
                out.select(reason_of("preprocess_error").alias("reason")), "reason")
            lake.write_table(spark, out, table, run.run_id, "preprocess")
            has_masks = bool(settings.imaging.segment)
            if has_masks:
                masks = out.where(F.col("mask").isNotNull() & (F.col("augment_index") == 0)) \
                    .select("image_id", F.lit(None).cast("string").alias("roi_name"),
                            F.lit(None).cast("string").alias("rtstruct_id"), "height", "width",
                            F.col("mask").alias("data"),
                            F.lit(f"segment-{digest}").alias("mask_source"), "ingest_date")
                lake.write_table(spark, masks, mask_table, run.run_id, "preprocess")
        finally:
            out.unpersist()
        outputs = {"preprocessed": output(lake, table)}
        if has_masks:
            outputs["masks"] = output(lake, mask_table)
        return run.manifest(spark, settings, counts, outputs, pipeline_hash=digest,
                            dates=[d.isoformat() for d in dates or []])


def feature_set_hash(settings: Settings) -> str:
    """Names the feature set: the features config (the matrix budget only when it is not the
    default, so feature sets made before it existed keep their name) and, where they matter,
    the imaging steps."""
    f = settings.features
    doc = {"features": f.model_dump(mode="json", exclude=(
        {"max_matrix_bytes"} if f.max_matrix_bytes == type(f)().max_matrix_bytes else set()))}
    if f.source == "preprocessed" or f.mask == "segment":
        doc["imaging"] = pipeline_hash(settings)
    return short_hash(doc)


def _feature_input(spark: SparkSession, settings: Settings, lake: Lake,
                   dates: list[dt.date] | None, table: str) -> DataFrame:
    """The planes (and masks) of `dates` that `table`, the feature set, lacks."""
    f = settings.features
    if f.source == "preprocessed":
        frame = lake.read(spark, table_of("preprocessed", pipeline_hash(settings))).where(
            F.col("data").isNotNull())
        frame = _dates(frame, dates)
        if f.modalities:
            frame = frame.where(F.col("modality").isin(f.modalities))
        frame = not_yet_done(spark, lake, frame, table)
        if f.mask == "none":  # the preprocessed rows carry their segment mask (or null)
            frame = frame.drop("mask")
        elif f.mask == "table":
            frame = frame.drop("mask").join(_mask_table(spark, lake, f.mask_source),
                                            "image_id")
        return frame
    frame = not_yet_done(spark, lake, planes_frame(spark, lake, dates, f.modalities or None),
                         table)
    if f.mask == "segment" and settings.imaging.segment:
        frame = Segmenter(steps=settings.imaging.segment).transform(frame)
    elif f.mask == "table":
        frame = frame.join(_mask_table(spark, lake, f.mask_source), "image_id")
    return frame


def _mask_table(spark: SparkSession, lake: Lake, source: str) -> DataFrame:
    """image_id, mask and roi_name of the masks with source=<source>."""
    masks = lake.read(spark, table_of("masks", source))
    return masks.select("image_id", F.col("data").alias("mask"), "roi_name")


def run_features(spark: SparkSession, settings: Settings, lake_root: str,
                 dates: list[dt.date] | None = None, run_id: str | None = None,
                 lake: Lake | None = None) -> dict:
    """Radiomics features of the planes (and masks) not yet in this feature set; commits
    features/ (partition feature_set=<hash>)."""
    lake = lake or Lake(lake_root)
    f, digest = settings.features, feature_set_hash(settings)
    extractor = FeatureExtractor(families=f.families, settings=f.settings,
                                 useMask=f.mask != "none", maxMatrixBytes=f.max_matrix_bytes)
    with job_run(lake, "features", run_id) as run:
        table = table_of("features", digest)
        out = extractor.transform(_feature_input(spark, settings, lake, dates, table))
        if "roi_name" not in out.columns:
            out = out.withColumn("roi_name", F.lit(None).cast("string"))
        out = out.drop(*[c for c in ("segment_error",) if c in out.columns]) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        try:
            log.info("features %s: %d features per plane -> %s", run.run_id,
                     len(extractor.featureNames()), lake.path(table))
            first = extractor.featureNames()[0]
            counts = out.agg(
                F.count(F.lit(1)).alias("rows"),
                F.count("feature_error").alias("errors"),
                F.count(F.when(F.col(first).isNull() | F.isnan(first), 1)).alias(
                    "undefined_rows"),
                F.count(F.when(F.size("feature_warnings") > 0, 1)).alias(
                    "rows_with_warnings"),
            ).first().asDict()
            counts["errors_by_reason"] = count_by(
                out.select(reason_of("feature_error").alias("reason")), "reason")
            # `over_matrix_budget: glcm needs ... bytes`: counted per reason and family
            warned = out.select(F.explode("feature_warnings").alias("warning"))
            counts["warnings_by_reason"] = count_by(warned.select(F.regexp_extract(
                "warning", r"^[^:]+: \S+", 0).alias("reason")), "reason")
            lake.write_table(spark, out, table, run.run_id, "features")
        finally:
            out.unpersist()
        return run.manifest(spark, settings, counts,
                            {"features": output(lake, table)},
                            feature_set=digest, n_features=len(extractor.featureNames()),
                            dates=[d.isoformat() for d in dates or []])
