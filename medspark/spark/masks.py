"""The masks job: DICOM RTSTRUCT objects in the catalog -> per-slice masks in masks/.

Ingest catalogs an RTSTRUCT as one object row (`n_planes = 0`). This job joins each one with
the image planes of the same (pseudonymised) study, re-reads the RTSTRUCT file inside the task,
maps the raw SOP Instance UIDs its contours reference through the same HMAC as the catalog, and
rasterises every ROI onto the slices it is drawn on (`medspark.segment.rtstruct`; UID match,
slice-position fallback). Raw identifiers never leave the task.

    masks/source=rtstruct/ingest_date=<d>/   image_id, roi_name, rtstruct_id, height, width,
                                              data (uint8 0/1), mask_source
"""

from __future__ import annotations

import logging
import time

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    DateType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from medspark.config import ConfigError, Settings
from medspark.lake import Lake, new_run_id
from medspark.spark.imaging import job_manifest, write_by_date

log = logging.getLogger(__name__)
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
GEOMETRY_KEYS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
                 "Columns", "SliceThickness")
MASK_ROW = StructType([
    StructField("image_id", StringType()),
    StructField("roi_name", StringType()),
    StructField("rtstruct_id", StringType()),
    StructField("height", IntegerType()),
    StructField("width", IntegerType()),
    StructField("data", BinaryType()),
    StructField("mask_source", StringType()),
    StructField("ingest_date", DateType()),
    StructField("error", StringType()),
    StructField("skipped_contours", IntegerType()),
])


def _rasterise_group(group: pd.DataFrame, key: bytes, max_shift_days: int) -> pd.DataFrame:
    """applyInPandas body: one RTSTRUCT and the planes of its study -> mask rows."""
    from medspark.ingest.records import read_source
    from medspark.io.types import Limits
    from medspark.planes import encode_mask
    from medspark.privacy.pseudonym import Pseudonymizer
    from medspark.segment.rtstruct import SliceGeometry, rasterise_rtstruct

    first = group.iloc[0]
    base = {"rtstruct_id": first.rtstruct_id, "mask_source": "rtstruct",
            "ingest_date": first.rt_ingest_date}
    pseudo = Pseudonymizer(key, max_shift_days)
    rows = []
    try:
        slices, image_of = [], {}
        for plane in group.itertuples():
            slice_key = plane.sop_pseudo_uid or plane.image_id
            attrs = {k: getattr(plane, k) for k in GEOMETRY_KEYS if getattr(plane, k)}
            slices.append(SliceGeometry.from_attributes(slice_key, attrs))
            image_of[slice_key] = plane.image_id
        data = read_source(first.rt_path, Limits())
        rois = rasterise_rtstruct(data, slices, uid_key=lambda u: pseudo.pseudonym("sop", u))
        for name, roi in rois.items():
            for slice_key, mask in roi.masks.items():
                rows.append({**base, "image_id": image_of[slice_key], "roi_name": name,
                             "height": mask.shape[0], "width": mask.shape[1],
                             "data": encode_mask(mask), "error": None,
                             "skipped_contours": roi.skipped})
            if not roi.masks:
                rows.append({**base, "image_id": None, "roi_name": name, "error": None,
                             "skipped_contours": roi.skipped})
    except Exception as e:  # noqa: BLE001 - one bad structure set is a reported row
        rows = [{**base, "image_id": None, "roi_name": None,
                 "error": f"{type(e).__name__}: {str(e)[:300]}", "skipped_contours": None}]
    return pd.DataFrame.from_records(rows, columns=MASK_ROW.names)


def run_masks(spark: SparkSession, settings: Settings, lake_root: str, key: bytes) -> dict:
    """Rasterise every cataloged RTSTRUCT onto its study's slices; writes masks/."""
    started, run_id, lake = time.time(), new_run_id("masks"), Lake(lake_root)
    if not lake.exists(spark, "catalog"):
        raise ConfigError(f"{lake.path('catalog')} not found: run `medspark ingest` first")
    catalog = lake.read(spark, "catalog")
    rt = catalog.where(F.col("sop_class_uid") == RTSTRUCT_SOP_CLASS).select(
        F.col("image_id").alias("rtstruct_id"), F.col("source_path").alias("rt_path"),
        "study_pseudo_uid", F.col("ingest_date").alias("rt_ingest_date"))
    planes = catalog.where((F.col("n_planes") == 1) & F.col("plane_index").isNotNull()).select(
        "image_id", "study_pseudo_uid", "sop_pseudo_uid",
        *[F.col("attributes")[k].alias(k) for k in GEOMETRY_KEYS])
    pairs = rt.join(planes, "study_pseudo_uid")
    max_shift = settings.privacy.max_shift_days
    out = pairs.groupBy("rtstruct_id").applyInPandas(
        lambda g: _rasterise_group(g, key, max_shift), MASK_ROW).cache()
    try:
        masks = out.where(F.col("data").isNotNull())
        target = f"{lake.path('masks')}/source=rtstruct"
        write_by_date(masks.drop("error", "skipped_contours"), target)
        summary = out.agg(
            F.countDistinct("rtstruct_id").alias("rtstructs_with_slices"),
            F.count("data").alias("masks"),
            F.countDistinct("roi_name").alias("roi_names"),
            F.count("error").alias("errors"),
        ).first().asDict()
        errors = [r["error"] for r in out.where(F.col("error").isNotNull())
                  .select("error").limit(20).collect()]
    finally:
        out.unpersist()
    summary["rtstructs_cataloged"] = rt.count()
    log.info("masks %s: %s", run_id, summary)
    return job_manifest(spark, lake, "masks", run_id, started, settings, {
        "counts": {**summary, "error_messages": errors}, "outputs": {"masks": target}})
