"""The ingest job: listed files -> catalog/, pixels/, quarantine/ and a run manifest.

Skeleton of every medspark job: list -> transform (one `mapInPandas` pass that reads, decodes,
de-identifies and emits rows) -> write lake tables -> write `_runs/<run_id>.json`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from dataclasses import dataclass, field
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings, settings_dict
from medspark.ingest.labels import prepare_labels
from medspark.ingest.records import IngestContext, process_batches
from medspark.io.types import Limits
from medspark.lake import Lake, is_local, new_run_id
from medspark.privacy.pseudonym import Pseudonymizer, resolve_key
from medspark.schema import CATALOG_FIELDS, INGEST_ROW, PIXEL_FIELDS, QUARANTINE_FIELDS
from medspark.spark.listing import InputSpec, list_files, list_from_file, resolve_input
from medspark.versions import library_versions

log = logging.getLogger(__name__)


@dataclass
class IngestRequest:
    """What to ingest; validated by `validate` before Spark starts."""

    inputs: list[str]
    lake: str
    input_lists: list[str] = field(default_factory=list)
    labels: str | None = None
    label_from_path: str | None = None
    specs: list[InputSpec] = field(default_factory=list)

    def validate(self, settings: Settings) -> bytes:
        """Check inputs, labels and the pseudonym key; return the key."""
        if not self.inputs and not self.input_lists:
            raise ConfigError("ingest needs at least one --input or --input-list")
        self.specs = [resolve_input(text) for text in self.inputs]
        if self.labels and self.label_from_path:
            raise ConfigError("use either --labels or --label-from-path, not both")
        if self.label_from_path:
            try:
                pattern = re.compile(self.label_from_path)
            except re.error as e:
                raise ConfigError(f"--label-from-path: invalid regex: {e}") from None
            if pattern.groups < 1:
                raise ConfigError("--label-from-path: the regex needs one capture group")
        try:
            return resolve_key(settings.privacy.allow_demo_key)
        except RuntimeError as e:
            raise ConfigError(str(e)) from None


def _read_mode(settings: Settings, spec: InputSpec) -> str:
    mode = settings.ingest.read_mode
    if mode == "auto":
        return "python" if is_local(spec.uri) else "jvm"
    return mode


def _previously_ingested(spark: SparkSession, lake: Lake, ingest_date: dt.date
                         ) -> DataFrame | None:
    """(path, size, mtime) of files already in catalog or quarantine on other dates."""
    frames = []
    for table in ("catalog", "quarantine"):
        if lake.exists(spark, table):
            df = lake.read(spark, table).where(F.col("ingest_date") != F.lit(ingest_date))
            frames.append(df.select("source_path", "source_size", "source_mtime"))
    if not frames:
        return None
    return reduce(DataFrame.unionByName, frames).distinct()


def _skip_known(listing: DataFrame, known: DataFrame | None) -> DataFrame:
    if known is None:
        return listing
    cond = (listing["path"] == known["source_path"]) & (
        listing["size"].isNull()
        | ((listing["size"] == known["source_size"])
           & (listing["mtime"] == known["source_mtime"]))
    )
    return listing.join(F.broadcast(known), cond, "left_anti")


def _label_frame(spark, request: IngestRequest, settings: Settings, pseudo: Pseudonymizer,
                 rows: DataFrame) -> tuple[DataFrame, list[str]]:
    """Join labels onto ingest rows; return the frame and the label column names."""
    if request.label_from_path:
        label = F.regexp_extract(F.col("source_path"), request.label_from_path, 1)
        rows = rows.withColumn("label", F.when(label != "", label))
        return rows, ["label"]
    if not request.labels:
        return rows.withColumn("label", F.lit(None).cast("string")), ["label"]
    table, join_col = prepare_labels(request.labels, pseudo, settings.ingest.label_key)
    clash = [c for c in table.columns if c != join_col and c in rows.columns]
    if clash:
        raise ConfigError(f"{request.labels}: label columns clash with catalog columns: {clash}")
    labels = spark.createDataFrame(table).withColumnRenamed(join_col, "_label_key")
    joined = rows.join(F.broadcast(labels), rows[join_col] == labels["_label_key"], "left")
    return joined.drop("_label_key"), [c for c in table.columns if c != join_col]


def run_ingest(spark: SparkSession, settings: Settings, request: IngestRequest,
               key: bytes, run_id: str | None = None) -> dict:
    """Run ingest and return its manifest (also written to `_runs/<run_id>.json`)."""
    started = time.time()
    run_id = run_id or new_run_id("ingest")
    lake = Lake(request.lake)
    cfg = settings.ingest
    ingest_date = cfg.ingest_date or dt.date.today()
    specs = request.specs or [resolve_input(text) for text in request.inputs]
    log.info("ingest %s: %d input(s) -> %s (ingest_date=%s)", run_id, len(specs), lake.root,
             ingest_date)

    python_listing, jvm_listing = [], []
    for spec in specs:
        if _read_mode(settings, spec) == "python":
            python_listing.append(list_files(spark, spec))
        else:
            jvm_listing.append(list_files(spark, spec, with_content=True))
    python_listing += [list_from_file(spark, path) for path in request.input_lists]

    known = _previously_ingested(spark, lake, ingest_date) if cfg.incremental else None
    ctx = IngestContext(
        limits=Limits(**cfg.limits.model_dump()),
        key=key,
        max_shift_days=settings.privacy.max_shift_days,
        run_id=run_id,
        batch_bytes=cfg.batch_bytes,
    )
    parts: list[DataFrame] = []
    files_listed = files_skipped = 0
    if python_listing:
        listing = reduce(DataFrame.unionByName, python_listing).dropDuplicates(["path"])
        listed = listing.count()
        todo = _skip_known(listing, known)
        n_todo = todo.count() if known is not None else listed
        files_listed += listed
        files_skipped += listed - n_todo
        n_parts = max(1, math.ceil(n_todo / cfg.files_per_task))
        parts.append(todo.repartition(n_parts).mapInPandas(
            lambda it: process_batches(it, ctx), INGEST_ROW))
    for jvm_df in jvm_listing:
        meta = jvm_df.drop("content")
        listed = meta.count()
        todo = _skip_known(jvm_df, known)
        n_todo = _skip_known(meta, known).count() if known is not None else listed
        files_listed += listed
        files_skipped += listed - n_todo
        parts.append(todo.mapInPandas(lambda it: process_batches(it, ctx), INGEST_ROW))
    log.info("ingest %s: %d file(s) listed, %d already ingested", run_id, files_listed,
             files_skipped)

    pseudo = Pseudonymizer(key, settings.privacy.max_shift_days)
    rows = reduce(DataFrame.unionByName, parts)
    rows, label_cols = _label_frame(spark, request, settings, pseudo, rows)
    rows = rows.persist(StorageLevel.DISK_ONLY)
    try:
        catalog_cols = [f.name for f in CATALOG_FIELDS] + label_cols
        pixels = rows.where(F.col("kind") == "plane").select(*[f.name for f in PIXEL_FIELDS])
        catalog = rows.where(F.col("kind").isin("plane", "object")).select(*catalog_cols)
        quarantine = rows.where(F.col("kind") == "error").select(
            *[f.name for f in QUARANTINE_FIELDS])
        log.info("ingest %s: decoding and writing pixels/", run_id)
        lake.write_partition(pixels, "pixels", ingest_date, cfg.pixels_compression)
        log.info("ingest %s: writing catalog/ and quarantine/", run_id)
        lake.write_partition(catalog, "catalog", ingest_date)
        lake.write_partition(quarantine, "quarantine", ingest_date)
    finally:
        rows.unpersist()

    manifest = {
        "run_id": run_id,
        "job": "ingest",
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": None,
        "inputs": list(request.inputs),
        "input_lists": list(request.input_lists),
        "labels": request.labels,
        "label_from_path": request.label_from_path,
        "lake": lake.root,
        "ingest_date": ingest_date.isoformat(),
        "config": settings_dict(settings),
        "versions": library_versions(),
        "spark": {"master": spark.sparkContext.master, "version": spark.version},
        "counts": _counts(spark, lake, ingest_date, files_listed, files_skipped),
    }
    manifest["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    manifest["duration_s"] = round(time.time() - started, 3)
    manifest["outputs"] = {t: lake.partition_path(t, ingest_date)
                           for t in ("catalog", "pixels", "quarantine")}
    manifest["manifest_path"] = lake.write_manifest(spark, run_id, manifest)
    return manifest


def _counts(spark: SparkSession, lake: Lake, ingest_date: dt.date, files_listed: int,
            files_skipped: int) -> dict:
    """Counts read back from what was written: what the invariants are checked against."""
    catalog = spark.read.parquet(lake.partition_path("catalog", ingest_date))
    quarantine = spark.read.parquet(lake.partition_path("quarantine", ingest_date))
    pixel_rows = spark.read.parquet(lake.partition_path("pixels", ingest_date)).count()
    cat = catalog.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("source_path").alias("files"),
        F.countDistinct(F.when(F.col("n_planes") > 0, F.col("source_path"))).alias("images"),
        F.count(F.when(F.col("n_planes") == 0, 1)).alias("objects"),
        F.count("label").alias("labelled"),
    ).first()
    by_class = {r["error_class"]: r["count"]
                for r in quarantine.groupBy("error_class").count().collect()}
    q_rows = sum(by_class.values())
    processed = files_listed - files_skipped
    return {
        "files_listed": files_listed,
        "files_skipped_already_ingested": files_skipped,
        "files_processed": processed,
        "files_cataloged": cat["files"],
        "image_files": cat["images"],
        "non_image_objects": cat["objects"],
        "files_quarantined": q_rows,
        "quarantined_by_class": by_class,
        "rows": {"catalog": cat["rows"], "pixels": pixel_rows, "quarantine": q_rows},
        "labelled_catalog_rows": cat["labelled"],
        "all_files_accounted": cat["files"] + q_rows == processed,
    }
