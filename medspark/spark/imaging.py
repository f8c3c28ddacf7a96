"""The preprocess and features jobs: lake tables in, derived lake tables out.

Both read the ingested planes (`catalog/` joined with `pixels/`), run medspark's `pyspark.ml`
stages (one `mapInPandas` pass per stage) and write Parquet partitioned by the hash of the
configuration that produced them and by `ingest_date`, so re-running a config replaces its own
output, a changed config never overwrites another's, and a nightly run can process only the
day's new images (`--date`).

    preprocessed/pipeline=<hash>/ingest_date=<d>/   images (+ mask) after segment+preprocess
                                                    (+ augmented copies)
    masks/source=segment-<hash>/ingest_date=<d>/    masks made by the segment steps
    features/feature_set=<hash>/ingest_date=<d>/    one row per plane: features + vector
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from medspark.config import ConfigError, Settings, settings_dict
from medspark.lake import Lake, new_run_id
from medspark.ml.stages import FeatureExtractor, ImagePreprocessor, Segmenter
from medspark.versions import library_versions

log = logging.getLogger(__name__)
PIXEL_COLUMNS = ("height", "width", "channels", "dtype", "data")
HASH_CHARS = 16


def _short_hash(doc: object) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def planes_frame(spark: SparkSession, lake: Lake, dates: list[dt.date] | None = None,
                 modalities: list[str] | None = None) -> DataFrame:
    """Ingested image planes: catalog columns (no header map) joined with their pixels."""
    for table in ("catalog", "pixels"):
        if not lake.exists(spark, table):
            raise ConfigError(f"{lake.path(table)} not found: run `medspark ingest` first")
    catalog = lake.read(spark, "catalog").where(F.col("plane_index").isNotNull())
    catalog = catalog.select(*[f.name for f in catalog.schema.fields
                               if not isinstance(f.dataType, MapType)
                               and f.name not in ("rows", "cols", "channels", "dtype")])
    if dates:
        catalog = catalog.where(F.col("ingest_date").isin([d.isoformat() for d in dates]))
    if modalities:
        catalog = catalog.where(F.col("modality").isin(modalities))
    pixels = lake.read(spark, "pixels").select("image_id", *PIXEL_COLUMNS)
    return catalog.join(pixels, "image_id")


def write_by_date(df: DataFrame, path: str) -> None:
    """Overwrite only the ingest_date partitions present in `df` under `path`."""
    (df.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
     .partitionBy("ingest_date").parquet(path))


def job_manifest(spark: SparkSession, lake: Lake, job: str, run_id: str, started: float,
              settings: Settings, extra: dict) -> dict:
    manifest = {
        "run_id": run_id, "job": job, "lake": lake.root,
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "duration_s": round(time.time() - started, 3),
        "config": settings_dict(settings), "versions": library_versions(),
        "spark": {"master": spark.sparkContext.master, "version": spark.version},
        **extra,
    }
    manifest["manifest_path"] = lake.write_manifest(spark, run_id, manifest)
    return manifest


def preprocessor(settings: Settings) -> ImagePreprocessor:
    img = settings.imaging
    return ImagePreprocessor(segment=img.segment, preprocess=img.preprocess,
                             augment=img.augment or "")


def pipeline_hash(settings: Settings) -> str:
    """Names the preprocessed/ partition: the steps and the images they apply to."""
    img = settings.imaging
    return _short_hash({"processing": img.processing().hash(),
                        "modalities": sorted(img.modalities)})


def run_preprocess(spark: SparkSession, settings: Settings, lake_root: str,
                   dates: list[dt.date] | None = None) -> dict:
    """segment + preprocess (+ augment) every ingested plane; writes preprocessed/ and masks/."""
    started, run_id, lake = time.time(), new_run_id("preprocess"), Lake(lake_root)
    digest = pipeline_hash(settings)
    frame = planes_frame(spark, lake, dates, settings.imaging.modalities or None)
    out = preprocessor(settings).transform(frame).persist(StorageLevel.DISK_ONLY)
    try:
        log.info("preprocess %s: pipeline %s over %s", run_id, digest, lake.root)
        target = f"{lake.path('preprocessed')}/pipeline={digest}"
        write_by_date(out, target)
        masks = out.where(F.col("mask").isNotNull() & (F.col("augment_index") == 0)).select(
            "image_id", F.lit(f"segment-{digest}").alias("mask_source"), "height", "width",
            F.col("mask").alias("data"), "ingest_date")
        has_masks = bool(settings.imaging.segment)
        if has_masks:
            write_by_date(masks, f"{lake.path('masks')}/source=segment-{digest}")
        counts = out.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when(F.col("augment_index") == 0, 1)).alias("images"),
            F.count(F.when(F.col("augment_index") > 0, 1)).alias("augmented"),
            F.count("preprocess_error").alias("errors"),
            F.count("mask").alias("with_mask"),
        ).first().asDict()
        errors = {r["preprocess_error"].split(":", 1)[0]: r["count"] for r in
                  out.where(F.col("preprocess_error").isNotNull())
                  .groupBy("preprocess_error").count().limit(20).collect()}
    finally:
        out.unpersist()
    outputs = {"preprocessed": target}
    if has_masks:
        outputs["masks"] = f"{lake.path('masks')}/source=segment-{digest}"
    return job_manifest(spark, lake, "preprocess", run_id, started, settings, {
        "pipeline_hash": digest, "dates": [d.isoformat() for d in dates or []],
        "counts": {**counts, "errors_by_type": errors}, "outputs": outputs})


def feature_set_hash(settings: Settings) -> str:
    f = settings.features
    doc = {"features": f.model_dump(mode="json")}
    if f.source == "preprocessed" or f.mask == "segment":
        doc["imaging"] = pipeline_hash(settings)
    return _short_hash(doc)


def _feature_input(spark: SparkSession, settings: Settings, lake: Lake,
                   dates: list[dt.date] | None) -> DataFrame:
    f = settings.features
    if f.source == "preprocessed":
        path = f"{lake.path('preprocessed')}/pipeline={pipeline_hash(settings)}"
        frame = _read_table(spark, path, "`medspark preprocess` with the same imaging config")
        frame = frame.where(F.col("data").isNotNull())
        if dates:
            frame = frame.where(F.col("ingest_date").isin([d.isoformat() for d in dates]))
        if f.modalities:
            frame = frame.where(F.col("modality").isin(f.modalities))
        if f.mask == "none":  # the preprocessed rows carry their segment mask (or null)
            frame = frame.drop("mask")
        elif f.mask == "table":
            frame = frame.drop("mask").join(_mask_table(spark, lake, f.mask_source),
                                            "image_id")
        return frame
    frame = planes_frame(spark, lake, dates, f.modalities or None)
    if f.mask == "segment" and settings.imaging.segment:
        frame = Segmenter(steps=settings.imaging.segment).transform(frame)
    elif f.mask == "table":
        frame = frame.join(_mask_table(spark, lake, f.mask_source), "image_id")
    return frame


def _read_table(spark: SparkSession, path: str, producer: str) -> DataFrame:
    """A derived table, or a ConfigError saying which job writes it."""
    try:
        return spark.read.parquet(path)
    except Exception as e:  # noqa: BLE001 - AnalysisException: path does not exist
        raise ConfigError(f"{path} not found: run {producer} first") from e


def _mask_table(spark: SparkSession, lake: Lake, source: str) -> DataFrame:
    """image_id, mask (and roi_name when the source has several ROIs) of masks/source=..."""
    path = f"{lake.path('masks')}/source={source}"
    masks = _read_table(spark, path, "`medspark masks` (rtstruct, label images) or "
                                     "`medspark preprocess` (segment-<hash>)")
    cols = ["image_id", F.col("data").alias("mask")]
    return masks.select(*cols, *(["roi_name"] if "roi_name" in masks.columns else []))


def run_features(spark: SparkSession, settings: Settings, lake_root: str,
                 dates: list[dt.date] | None = None) -> dict:
    """Radiomics features per plane (and mask) into features/feature_set=<hash>/."""
    started, run_id, lake = time.time(), new_run_id("features"), Lake(lake_root)
    f, digest = settings.features, feature_set_hash(settings)
    extractor = FeatureExtractor(families=f.families, settings=f.settings,
                                 useMask=f.mask != "none")
    frame = _feature_input(spark, settings, lake, dates)
    out = extractor.transform(frame).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        target = f"{lake.path('features')}/feature_set={digest}"
        log.info("features %s: %d features per plane -> %s", run_id,
                 len(extractor.featureNames()), target)
        write_by_date(out.drop(*[c for c in ("segment_error",) if c in out.columns]), target)
        first = extractor.featureNames()[0]
        counts = out.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count("feature_error").alias("errors"),
            F.count(F.when(F.isnan(first), 1)).alias("undefined_rows"),
        ).first().asDict()
    finally:
        out.unpersist()
    return job_manifest(spark, lake, "features", run_id, started, settings, {
        "feature_set": digest, "n_features": len(extractor.featureNames()),
        "dates": [d.isoformat() for d in dates or []], "counts": counts,
        "outputs": {"features": target}})
