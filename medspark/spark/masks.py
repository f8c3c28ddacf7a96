"""The masks job: DICOM RTSTRUCT and SEG objects in the catalog -> per-slice masks in masks/.

Ingest catalogs an RTSTRUCT as one object row (`n_planes = 0`). This job joins each one with
the image planes of the same (pseudonymised) study, re-reads the RTSTRUCT file inside the task,
maps the raw SOP Instance UIDs its contours reference through the same HMAC as the catalog, and
rasterises every ROI onto the slices it is drawn on (`medspark.segment.rtstruct`; UID match,
slice-position fallback). Raw identifiers never leave the task.

    masks/source=rtstruct    image_id, roi_name, rtstruct_id, height, width, data (uint8 0/1),
                             mask_source; partitioned by the structure set's ingest_date
    masks/source=seg         the same for DICOM SEG segments (SegmentLabel as roi_name, the
                             SEG's first-plane id as rtstruct_id)

Incremental: a run rasterises the structure sets not yet in masks/, and with `--date D` also
those whose study received planes on D (an RTSTRUCT that arrived before its images); rows already
committed (same source, image, ROI) are not added again.

`run_label_masks` does the same for label images (NIfTI, PNG, ... read by medspark's readers):
each label file is matched to an ingested image by its relative path, rewritten with a regex
(`case_7_seg.nii.gz` -> `case_7.nii.gz`), and plane by plane (slice k of a label volume is plane
k of the image); every distinct non-zero label value becomes one ROI (`label-<value>`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import pandas as pd
from pydicom.uid import RTStructureSetStorage, SegmentationStorage
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
from medspark.lake import Lake, table_of
from medspark.spark.runs import count_by, job_run, reason_of

log = logging.getLogger(__name__)
RTSTRUCT_SOP_CLASS = str(RTStructureSetStorage)
SEG_SOP_CLASS = str(SegmentationStorage)
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
    from medspark.ingest.source_read import read_source
    from medspark.io.types import Limits
    from medspark.planes import encode_mask
    from medspark.privacy.pseudonym import Pseudonymizer
    from medspark.segment.dicom_seg import rasterise_seg
    from medspark.segment.rtstruct import SliceGeometry, rasterise_rtstruct

    first = group.iloc[0]
    base = {"rtstruct_id": first.rtstruct_id, "mask_source": first.rt_kind,
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
        rasterise = rasterise_seg if first.rt_kind == "seg" else rasterise_rtstruct
        rois = rasterise(data, slices, uid_key=lambda u: pseudo.pseudonym("sop", u))
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


def run_masks(spark: SparkSession, settings: Settings, lake_root: str, key: bytes,
              dates: list[dt.date] | None = None, run_id: str | None = None,
              lake: Lake | None = None) -> dict:
    """Rasterise the cataloged RTSTRUCTs and SEGs not yet in masks/ (and, with `dates`, those
    whose study received planes on those dates) onto their study's slices; commits masks/."""
    lake = lake or Lake(lake_root)
    with job_run(lake, "masks", run_id) as run:
        catalog = lake.read(spark, "catalog")
        # one row per object: an RTSTRUCT's object row, a SEG's first frame (ingest decodes
        # SEGs)
        objects = catalog.where(F.col("sop_class_uid").isin(RTSTRUCT_SOP_CLASS, SEG_SOP_CLASS)
                                & (F.col("plane_index").isNull() | (F.col("plane_index") == 0)))
        rt = objects.select(
            F.col("image_id").alias("rtstruct_id"), F.col("source_path").alias("rt_path"),
            "study_pseudo_uid", F.col("ingest_date").alias("rt_ingest_date"),
            F.when(F.col("sop_class_uid") == SEG_SOP_CLASS, "seg").otherwise("rtstruct")
            .alias("rt_kind")).dropDuplicates(["rtstruct_id"])
        planes = catalog.where((F.col("n_planes") == 1) & F.col("plane_index").isNotNull()
                               & ~F.col("sop_class_uid").eqNullSafe(SEG_SOP_CLASS)).select(
            "image_id", "study_pseudo_uid", "sop_pseudo_uid", "ingest_date",
            *[F.col("attributes")[k].alias(k) for k in GEOMETRY_KEYS]) \
            .dropDuplicates(["image_id"])
        todo = _objects_to_rasterise(spark, lake, rt, planes, dates)
        pairs = todo.join(planes.drop("ingest_date"), "study_pseudo_uid")
        max_shift = settings.privacy.max_shift_days
        out = pairs.groupBy("rtstruct_id").applyInPandas(
            lambda g: _rasterise_group(g, key, max_shift), MASK_ROW).cache()
        try:
            masks = out.where(F.col("data").isNotNull()).drop("error", "skipped_contours")
            summary = out.agg(
                F.countDistinct("rtstruct_id").alias("objects_with_slices"),
                F.count("data").alias("masks"),
                F.countDistinct("roi_name").alias("roi_names"),
                F.count("error").alias("errors"),
            ).first().asDict()
            summary["errors_by_reason"] = count_by(
                out.select(reason_of("error").alias("reason")), "reason")
            errors = [r["error"] for r in out.where(F.col("error").isNotNull())
                      .select("error").limit(20).collect()]
            for kind in ("rtstruct", "seg"):
                lake.write_table(spark, masks.where(F.col("mask_source") == kind),
                                 table_of("masks", kind), run.run_id, "masks")
        finally:
            out.unpersist()
        kinds = {r["rt_kind"]: r["count"] for r in rt.groupBy("rt_kind").count().collect()}
        summary["rtstructs_cataloged"] = kinds.get("rtstruct", 0)
        summary["segs_cataloged"] = kinds.get("seg", 0)
        summary["objects_processed"] = todo.count()
        log.info("masks %s: %s", run.run_id, summary)
        outputs = {f"masks_{kind}": {"table": lake.path(table_of("masks", kind)),
                                     **lake.commits.get(table_of("masks", kind), {})}
                   for kind in ("rtstruct", "seg")}
        return run.manifest(spark, settings, {**summary, "error_messages": errors}, outputs,
                            dates=[d.isoformat() for d in dates or []])


def _objects_to_rasterise(spark: SparkSession, lake: Lake, rt, planes,
                          dates: list[dt.date] | None):
    """Structure sets not yet in masks/, plus (with `dates`) those whose study got planes on
    one of the dates."""
    todo = rt
    for kind in ("rtstruct", "seg"):
        if lake.exists(table_of("masks", kind)):
            done = lake.read(spark, table_of("masks", kind)).select("rtstruct_id").distinct()
            todo = todo.join(done, "rtstruct_id", "left_anti")
    if dates:
        fresh = planes.where(F.col("ingest_date").isin(list(dates))).select(
            "study_pseudo_uid").distinct()
        todo = todo.unionByName(rt.join(fresh, "study_pseudo_uid", "left_semi")).distinct()
    return todo


LABEL_ROW = StructType([
    StructField("label_path", StringType()),
    StructField("image_relpath", StringType()),
    StructField("plane_index", IntegerType()),
    StructField("roi_name", StringType()),
    StructField("height", IntegerType()),
    StructField("width", IntegerType()),
    StructField("data", BinaryType()),
    StructField("error", StringType()),
])
MAX_LABELS_PER_PLANE = 255


def _label_planes(batches, pattern: str, replacement: str):
    """mapInPandas body: label files -> one row per (plane, non-zero label value)."""
    import numpy as np

    from medspark.ingest.source_read import read_source
    from medspark.io.read import read_image
    from medspark.io.types import Limits, ReadError
    from medspark.planes import encode_mask
    from medspark.worker import freeze_long_lived

    freeze_long_lived()
    regex = re.compile(pattern)
    for batch in batches:
        rows = []
        for path, relpath in zip(batch["path"], batch["relpath"], strict=True):
            base = {"label_path": path, "image_relpath": regex.sub(replacement, relpath or "")}
            try:
                img = read_image(read_source(path, Limits()), Limits(), name=path)
                if img.pixels is None or img.channels != 1:
                    raise ReadError("not_a_label_image", "label images need one channel")
                for k in range(img.n_planes):
                    plane = img.pixels[k, :, :, 0]
                    values = np.unique(plane[plane != 0])
                    if values.size > MAX_LABELS_PER_PLANE:
                        raise ReadError("not_a_label_image",
                                        f"{values.size} distinct values: not a label image")
                    for v in values:
                        label = int(v) if float(v).is_integer() else float(v)
                        rows.append({**base, "plane_index": k, "roi_name": f"label-{label}",
                                     "height": plane.shape[0], "width": plane.shape[1],
                                     "data": encode_mask(plane == v), "error": None})
            except ReadError as e:
                rows.append({**base, "error": f"{e.error_class}: {e.message}"})
            except Exception as e:  # noqa: BLE001 - a bad label file is a reported row
                rows.append({**base, "error": f"decode_error: {type(e).__name__}"})
        yield pd.DataFrame.from_records(rows, columns=LABEL_ROW.names)


def run_label_masks(spark: SparkSession, settings: Settings, lake_root: str, labels_uri: str,
                    source: str, pattern: str = r"^(.*)$", replacement: str = r"\1",
                    run_id: str | None = None) -> dict:
    """Masks from label images under `labels_uri`, joined to ingested planes by relative path
    (rewritten by `pattern` -> `replacement`) and plane index; commits masks/ with
    source=<source>."""
    from medspark.spark.listing import list_files, resolve_input

    lake = Lake(lake_root)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", source) or source in ("rtstruct", "seg"):
        raise ConfigError(f"mask source name {source!r}: use letters, digits, '_', '.', '-' "
                          "(and not 'rtstruct' or 'seg')")
    try:
        re.compile(pattern).sub(replacement, "")
    except (re.error, IndexError) as e:
        raise ConfigError(f"label path rewrite {pattern!r} -> {replacement!r}: {e}") from None
    with job_run(lake, "masks", run_id) as run:
        files = list_files(spark, resolve_input(labels_uri))
        planes = lake.read(spark, "catalog").where(F.col("plane_index").isNotNull()).select(
            "image_id", F.col("source_relpath").alias("image_relpath"), "plane_index",
            F.col("rows").alias("image_rows"), F.col("cols").alias("image_cols"),
            "ingest_date").dropDuplicates(["image_id"])
        labels = files.mapInPandas(lambda it: _label_planes(it, pattern, replacement),
                                   LABEL_ROW)
        joined = labels.join(planes, ["image_relpath", "plane_index"], "left").withColumn(
            "error", F.coalesce(
                F.col("error"),
                F.when(F.col("image_id").isNull(), F.lit("no_matching_image_plane")),
                F.when((F.col("height") != F.col("image_rows"))
                       | (F.col("width") != F.col("image_cols")),
                       F.lit("shape_differs_from_image")))).cache()
        try:
            good = joined.where(F.col("error").isNull()).select(
                "image_id", "roi_name", F.lit(None).cast("string").alias("rtstruct_id"),
                "height", "width", "data", F.lit(source).alias("mask_source"), "ingest_date")
            counts = joined.agg(
                F.countDistinct("label_path").alias("label_files"),
                F.count(F.when(F.col("error").isNull(), 1)).alias("masks"),
                F.countDistinct(F.when(F.col("error").isNull(), F.col("roi_name"))).alias(
                    "roi_names"),
                F.count("error").alias("errors"),
            ).first().asDict()
            counts["errors_by_reason"] = count_by(
                joined.select(reason_of("error").alias("reason")), "reason")
            lake.write_table(spark, good, table_of("masks", source), run.run_id, "masks")
        finally:
            joined.unpersist()
        return run.manifest(spark, settings, counts,
                            {"masks": {"table": lake.path(table_of("masks", source)),
                                       **lake.commits.get(table_of("masks", source), {})}},
                            labels=labels_uri, rewrite=[pattern, replacement])
