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

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings, settings_dict
from medspark.ingest.labels import prepare_labels
from medspark.ingest.records import IngestContext, process_batches
from medspark.ingest.staged import PIXEL_ARROW, QUARANTINE_ARROW, LabelLookup, Staging
from medspark.io.types import Limits
from medspark.lake import TABLES, Lake, is_local, local_path, new_run_id
from medspark.privacy.pseudonym import Pseudonymizer, resolve_key
from medspark.schema import (
    CATALOG_FIELDS,
    INGEST_ROW,
    PIXEL_FIELDS,
    QUARANTINE_FIELDS,
    SUMMARY_ROW,
)
from medspark.session import driver_jvm_flags
from medspark.spark.listing import (
    InputSpec,
    list_files,
    list_from_file,
    list_local_files,
    python_listable,
    resolve_input,
)
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
    table, join_col = _label_table(request, settings, pseudo)
    labels = spark.createDataFrame(table).withColumnRenamed(join_col, "_label_key")
    joined = rows.join(F.broadcast(labels), rows[join_col] == labels["_label_key"], "left")
    return joined.drop("_label_key"), [c for c in table.columns if c != join_col]


def _label_table(request: IngestRequest, settings: Settings, pseudo: Pseudonymizer
                 ) -> tuple[pd.DataFrame, str]:
    """The `--labels` table and its join column; its label columns must not reuse an ingest
    row's column name (the same rule whichever writer runs)."""
    table, join_col = prepare_labels(request.labels, pseudo, settings.ingest.label_key)
    clash = [c for c in table.columns if c != join_col and c in INGEST_ROW.names]
    if clash:
        raise ConfigError(f"{request.labels}: label columns clash with ingest columns: {clash}")
    return table, join_col


def _worker_staging(request: IngestRequest, settings: Settings, pseudo: Pseudonymizer,
                    lake: Lake, run_id: str) -> Staging:
    """Staging folders and the label lookup for worker-written tables."""
    if request.label_from_path:
        labels = LabelLookup.from_regex(request.label_from_path)
    elif request.labels:
        labels = LabelLookup.from_table(*_label_table(request, settings, pseudo))
    else:
        labels = LabelLookup.empty()
    return Staging(**{t: local_path(lake.staging_path(run_id, t)) for t in TABLES},
                   labels=labels, compression=settings.ingest.pixels_compression)


def _listings(spark: SparkSession, settings: Settings, request: IngestRequest,
              specs: list[InputSpec], listing_dir: str | None
              ) -> tuple[DataFrame | None, int | None, list[DataFrame]]:
    """Listing frames of the inputs: files the Python workers read (deduplicated, with their
    count when the driver knows it) and frames whose bytes the JVM ships."""
    python_listing, jvm_listing, counts = [], [], []
    for spec in specs:
        if _read_mode(settings, spec) != "python":
            jvm_listing.append(list_files(spark, spec, with_content=True))
        elif listing_dir and python_listable(spec):
            frame, count = list_local_files(spark, spec, listing_dir)
            python_listing.append(frame)
            counts.append(count)
        else:
            python_listing.append(list_files(spark, spec))
    python_listing += [list_from_file(spark, path) for path in request.input_lists]
    if not python_listing:
        return None, None, jvm_listing
    if len(python_listing) == 1 and counts:  # one directory walk: no duplicates, count known
        return python_listing[0], counts[0], jvm_listing
    listing = reduce(DataFrame.unionByName, python_listing).dropDuplicates(["path"])
    return listing, None, jvm_listing


def run_ingest(spark: SparkSession, settings: Settings, request: IngestRequest,
               key: bytes, run_id: str | None = None) -> dict:
    """Run ingest and return its manifest (also written to `_runs/<run_id>.json`).

    Local (or shared, mounted) lake: the Python workers write the tables' files themselves and
    return count rows, and the driver publishes the files; otherwise Spark writes the rows the
    workers return.
    """
    started = time.time()
    run_id = run_id or new_run_id("ingest")
    lake = Lake(request.lake)
    cfg = settings.ingest
    ingest_date = cfg.ingest_date or dt.date.today()
    specs = request.specs or [resolve_input(text) for text in request.inputs]
    log.info("ingest %s: %d input(s) -> %s (ingest_date=%s)", run_id, len(specs), lake.root,
             ingest_date)
    worker_tables = cfg.pixel_writer == "worker" or (
        cfg.pixel_writer == "auto" and is_local(lake.root))
    if worker_tables and not is_local(lake.root):
        raise ConfigError("ingest.pixel_writer=worker needs a local (or shared, mounted) lake")
    pseudo = Pseudonymizer(key, settings.privacy.max_shift_days)
    staging = _worker_staging(request, settings, pseudo, lake, run_id) \
        if worker_tables else None
    try:
        listing_dir = local_path(lake.staging_path(run_id, "listing")) if worker_tables else None
        listing, listed, jvm_listing = _listings(spark, settings, request, specs, listing_dir)
        known = _previously_ingested(spark, lake, ingest_date) if cfg.incremental else None
        ctx = IngestContext(
            limits=Limits(**cfg.limits.model_dump()),
            key=key,
            max_shift_days=settings.privacy.max_shift_days,
            run_id=run_id,
            batch_bytes=cfg.batch_bytes,
            staging=staging,
        )
        out_schema = SUMMARY_ROW if staging else INGEST_ROW
        parts: list[DataFrame] = []
        files_listed = files_skipped = 0
        if listing is not None:
            listed = listing.count() if listed is None else listed
            todo = _skip_known(listing, known)
            n_todo = todo.count() if known is not None else listed
            files_listed += listed
            files_skipped += listed - n_todo
            # at least one task per core; beyond that, tasks of files_per_task files (each task
            # costs a round trip to a Python worker, so few large ones beat many small ones)
            n_parts = max(spark.sparkContext.defaultParallelism,
                          math.ceil(n_todo / cfg.files_per_task))
            parts.append(todo.repartition(n_parts).mapInPandas(
                lambda it: process_batches(it, ctx), out_schema))
        for jvm_df in jvm_listing:
            meta = jvm_df.drop("content")
            listed = meta.count()
            todo = _skip_known(jvm_df, known)
            n_todo = _skip_known(meta, known).count() if known is not None else listed
            files_listed += listed
            files_skipped += listed - n_todo
            parts.append(todo.mapInPandas(lambda it: process_batches(it, ctx), out_schema))
        log.info("ingest %s: %d file(s) listed, %d already ingested", run_id, files_listed,
                 files_skipped)
        rows = reduce(DataFrame.unionByName, parts)
        if staging:
            summary = _write_by_workers(rows, staging, lake, ingest_date, run_id)
            label_cols = staging.labels.columns
        else:
            summary, label_cols = _write_by_spark(spark, request, settings, pseudo, rows,
                                                  lake, ingest_date, run_id)
    finally:
        if worker_tables:
            lake.drop_staging(run_id)

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
        "spark": {"master": spark.sparkContext.master, "version": spark.version,
                  "driver_jvm_flags": driver_jvm_flags(spark)},
        "counts": _counts(spark, lake, ingest_date, summary, files_listed, files_skipped),
        "pixel_writer": "worker" if worker_tables else "spark",
    }
    manifest["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    manifest["duration_s"] = round(time.time() - started, 3)
    manifest["outputs"] = {t: lake.partition_path(t, ingest_date)
                           for t in ("catalog", "pixels", "quarantine")}
    manifest["manifest_path"] = lake.write_manifest(spark, run_id, manifest)
    return manifest


def _write_by_workers(rows: DataFrame, staging: Staging, lake: Lake, ingest_date: dt.date,
                      run_id: str) -> dict:
    """Run the workers (they write the staged files) and publish what they wrote."""
    log.info("ingest %s: decoding; workers write catalog/, pixels/ and quarantine/ files",
             run_id)
    # a few count rows per task (one per batch and kind): summed on the driver, which spares
    # an aggregate's hash map per task, a shuffle and a final stage
    groups = rows.collect()
    log.info("ingest %s: publishing the staged files", run_id)
    lake.commit_staged(staging.catalog, "catalog", ingest_date, staging.catalog_arrow)
    lake.commit_staged(staging.quarantine, "quarantine", ingest_date, QUARANTINE_ARROW)
    lake.commit_staged(staging.pixels, "pixels", ingest_date, PIXEL_ARROW)
    return _summary([g.asDict() for g in groups])


def _write_by_spark(spark: SparkSession, request: IngestRequest, settings: Settings,
                    pseudo: Pseudonymizer, rows: DataFrame, lake: Lake, ingest_date: dt.date,
                    run_id: str) -> tuple[dict, list[str]]:
    """Join labels and write the three tables with Spark (a lake workers cannot write)."""
    rows, label_cols = _label_frame(spark, request, settings, pseudo, rows)
    rows = rows.persist(StorageLevel.DISK_ONLY)  # pixel bytes: spill, do not hold in memory
    try:
        log.info("ingest %s: reading and decoding", run_id)
        groups = rows.groupBy("kind", "error_class").agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when((F.col("kind") != "plane") | (F.col("plane_index") == 0),
                           True)).alias("files"),
            F.count("label").alias("labelled"),
        ).collect()  # first action: decodes everything once, into the cache
        log.info("ingest %s: writing pixels/", run_id)
        planes = rows.where(F.col("kind") == "plane")
        lake.write_partition(planes.select(*[f.name for f in PIXEL_FIELDS]), "pixels",
                             ingest_date, settings.ingest.pixels_compression)
        log.info("ingest %s: writing catalog/ and quarantine/", run_id)
        catalog_cols = [f.name for f in CATALOG_FIELDS] + label_cols
        lake.write_partition(rows.where(F.col("kind").isin("plane", "object"))
                             .select(*catalog_cols), "catalog", ingest_date)
        lake.write_partition(rows.where(F.col("kind") == "error")
                             .select(*[f.name for f in QUARANTINE_FIELDS]), "quarantine",
                             ingest_date)
    finally:
        rows.unpersist()
    return _summary([g.asDict() for g in groups]), label_cols


def _summary(groups: list[dict]) -> dict:
    """Run figures from count rows per kind and error class (rows, files, labelled)."""
    def total(field: str, *kinds: str) -> int:
        return sum(g[field] or 0 for g in groups if g["kind"] in kinds)

    by_class: dict[str, int] = {}
    for g in groups:
        if g["kind"] == "error":
            by_class[g["error_class"]] = by_class.get(g["error_class"], 0) + g["rows"]
    return {
        "catalog_rows": total("rows", "plane", "object"),
        "plane_rows": total("rows", "plane"),
        "object_rows": total("rows", "object"),
        "files_cataloged": total("files", "plane", "object"),
        "image_files": total("files", "plane"),
        "labelled": total("labelled", "plane", "object"),
        "quarantine_rows": total("rows", "error"),
        "quarantined_by_class": by_class,
    }


def _counts(spark: SparkSession, lake: Lake, ingest_date: dt.date, summary: dict,
            files_listed: int, files_skipped: int) -> dict:
    """Counts of the run; rows per table are read back from what was written, and the
    invariant (every processed file in catalog or quarantine, once) is checked against them."""
    written = {t: lake.count_rows(spark, t, ingest_date) for t in ("catalog", "pixels",
                                                                  "quarantine")}
    processed = files_listed - files_skipped
    consistent = written == {"catalog": summary["catalog_rows"],
                             "pixels": summary["plane_rows"],
                             "quarantine": summary["quarantine_rows"]}
    if not consistent:
        log.error("rows written %s differ from rows produced %s", written, summary)
    return {
        "files_listed": files_listed,
        "files_skipped_already_ingested": files_skipped,
        "files_processed": processed,
        "files_cataloged": summary["files_cataloged"],
        "image_files": summary["image_files"],
        "non_image_objects": summary["object_rows"],
        "files_quarantined": summary["quarantine_rows"],
        "quarantined_by_class": summary["quarantined_by_class"],
        "rows": written,
        "labelled_catalog_rows": summary["labelled"],
        "all_files_accounted": consistent and (
            summary["files_cataloged"] + summary["quarantine_rows"] == processed),
    }
