"""The ingest job: listed files -> catalog/, pixels/, quarantine/ and a run manifest.

Skeleton of every medspark job: list -> transform (one `mapInPandas` pass that reads, decodes,
de-identifies, labels and emits rows) -> commit lake tables (one Delta commit per table) ->
write `_runs/<run_id>.json`.

Nothing a previous run produced is removed or replaced: files already ingested (same path, size
and mtime, on any date) are skipped, and a commit leaves out rows whose key is already in the
table (`medspark.lake.TABLES`), so ingesting folder A and then folder B on the same day keeps
both, and a re-run commits nothing new. A file whose content changed under the same path is a
new version (new `image_id`s); the catalog's current version of a path is its latest
(`Lake`-level rule documented in docs/lake.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import dataclass, field
from functools import reduce

import pandas as pd
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings
from medspark.ingest.labels import prepare_labels
from medspark.ingest.records import IngestContext, process_batches
from medspark.ingest.staged import LabelLookup, Staging
from medspark.io.types import Limits
from medspark.lake import INGEST_TABLES, Lake, is_local, local_path
from medspark.privacy.pseudonym import Pseudonymizer, resolve_key
from medspark.schema import (
    CATALOG_ARROW,
    INGEST_ROW_ARROW,
    PIXEL_ARROW,
    QUARANTINE_ARROW,
    with_labels,
)
from medspark.spark.listing import (
    InputSpec,
    check_scheme_supported,
    list_files,
    list_from_file,
    list_local_files,
    python_listable,
    resolve_input,
)
from medspark.spark.runs import job_run
from medspark.spark.schemas import SUMMARY_ROW, spark_schema

log = logging.getLogger(__name__)
# quarantine reasons that may not hold next time (a hung mount, a permission fixed): a file
# quarantined for one of them is tried again by the next run, not skipped as ingested
TRANSIENT_ERRORS = ("read_timeout", "read_error", "file_not_found")


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


def _previously_ingested(spark: SparkSession, lake: Lake) -> DataFrame | None:
    """(path, size, mtime) of files already in catalog or quarantine (any date), from the
    tables' current snapshots; transient quarantine reasons are tried again."""
    frames = []
    for table in ("catalog", "quarantine"):
        if lake.exists(table):
            df = lake.read(spark, table)
            if table == "quarantine":
                df = df.where(~F.col("error_class").isin(*TRANSIENT_ERRORS))
            frames.append(df.select("source_path", "source_size", "source_mtime"))
    if not frames:
        return None
    return reduce(DataFrame.unionByName, frames).distinct()


def _versions(spark: SparkSession, lake: Lake) -> DataFrame | None:
    """The highest `source_version` cataloged per path: a listed file whose path is known but
    whose size or mtime changed becomes the next version (if its content did change)."""
    if not lake.exists("catalog"):
        return None
    catalog = lake.read(spark, "catalog")
    if "source_version" not in catalog.columns:
        return None
    return catalog.groupBy(F.col("source_path").alias("path")).agg(
        F.max(F.coalesce("source_version", F.lit(1))).alias("prev_version"))


def _with_versions(listing: DataFrame, versions: DataFrame | None) -> DataFrame:
    if versions is None:
        return listing.withColumn("prev_version", F.lit(None).cast("int"))
    return listing.join(versions, "path", "left")


def _skip_known(listing: DataFrame, known: DataFrame | None) -> DataFrame:
    if known is None:
        return listing
    cond = (listing["path"] == known["source_path"]) & (
        listing["size"].isNull()
        | ((listing["size"] == known["source_size"])
           & (listing["mtime"] == known["source_mtime"]))
    )
    return listing.join(F.broadcast(known), cond, "left_anti")


def _label_table(request: IngestRequest, settings: Settings, pseudo: Pseudonymizer
                 ) -> tuple[pd.DataFrame, str]:
    """The `--labels` table and its join column; its label columns must not reuse an ingest
    row's column name."""
    table, join_col = prepare_labels(request.labels, pseudo, settings.ingest.label_key)
    clash = [c for c in table.columns if c != join_col and c in INGEST_ROW_ARROW.names]
    if clash:
        raise ConfigError(f"{request.labels}: label columns clash with ingest columns: {clash}")
    return table, join_col


def label_lookup(request: IngestRequest, settings: Settings, pseudo: Pseudonymizer
                 ) -> LabelLookup:
    """How the workers label catalog rows, the same for both writers: a `--labels` table, a
    `--label-from-path` regex (Python's `re`), or no label."""
    if request.label_from_path:
        return LabelLookup.from_regex(request.label_from_path)
    if request.labels:
        return LabelLookup.from_table(*_label_table(request, settings, pseudo))
    return LabelLookup.empty()


def _conform_to_catalog(labels: LabelLookup, lake: Lake) -> LabelLookup:
    """The run's label columns typed as the existing catalog's (see LabelLookup.conform)."""
    if not lake.exists("catalog"):
        return labels
    schema = lake.snapshot("catalog").arrow_schema
    table = {f.name: f.type for f in schema
             if f.name not in CATALOG_ARROW.names and f.name != "ingest_date"}
    try:
        return labels.conform(table)
    except ValueError as e:
        raise ConfigError(f"{lake.path('catalog')}: {e}") from None


def _worker_staging(labels: LabelLookup, settings: Settings, lake: Lake, run_id: str,
                    ingest_date: dt.date) -> Staging:
    """Stage folders of the run's worker-written files, one per table."""
    part = f"ingest_date={ingest_date.isoformat()}"
    return Staging(**{t: local_path(f"{lake.run_dir(t, run_id)}/{part}")
                      for t in INGEST_TABLES},
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
               key: bytes, run_id: str | None = None, lake: Lake | None = None) -> dict:
    """Run ingest and return its manifest (also written to `_runs/<run_id>.json`).

    Local (or shared, mounted) lake: the Python workers write the tables' files themselves and
    return count rows, and the driver commits the files; otherwise Spark writes the rows the
    workers return. Either way each table gets one Delta commit (pixels first, so a catalog
    row's pixels are always visible before it).
    """
    lake = lake or Lake(request.lake)
    cfg = settings.ingest
    ingest_date = cfg.ingest_date or dt.date.today()
    specs = request.specs or [resolve_input(text) for text in request.inputs]
    for spec in specs:
        check_scheme_supported(spark, spec.uri)
    worker_tables = cfg.pixel_writer == "worker" or (
        cfg.pixel_writer == "auto" and is_local(lake.root))
    if worker_tables and not is_local(lake.root):
        raise ConfigError("ingest.pixel_writer=worker needs a local (or shared, mounted) lake")
    pseudo = Pseudonymizer(key, settings.privacy.max_shift_days)
    labels = _conform_to_catalog(label_lookup(request, settings, pseudo), lake)
    with job_run(lake, "ingest", run_id) as run:
        log.info("ingest %s: %d input(s) -> %s (ingest_date=%s)", run.run_id, len(specs),
                 lake.root, ingest_date)
        staging = _worker_staging(labels, settings, lake, run.run_id, ingest_date) \
            if worker_tables else None
        listing_dir = local_path(lake.staging_path(run.run_id, "listing")) \
            if worker_tables else None
        listing, listed, jvm_listing = _listings(spark, settings, request, specs, listing_dir)
        known = _previously_ingested(spark, lake) if cfg.incremental else None
        versions = _versions(spark, lake)
        ctx = IngestContext(
            limits=Limits(**cfg.limits.model_dump(exclude={"read_timeout_s"})),
            key=key,
            max_shift_days=settings.privacy.max_shift_days,
            run_id=run.run_id,
            batch_bytes=cfg.batch_bytes,
            staging=staging,
            labels=labels,
            read_timeout_s=cfg.limits.read_timeout_s,
        )
        out_schema = SUMMARY_ROW if staging else spark_schema(
            with_labels(INGEST_ROW_ARROW, [f for f in labels.fields
                                          if f.name not in INGEST_ROW_ARROW.names]))
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
            parts.append(_with_versions(todo, versions).repartition(n_parts).mapInPandas(
                lambda it: process_batches(it, ctx), out_schema))
        for jvm_df in jvm_listing:
            meta = jvm_df.drop("content")
            listed = meta.count()
            todo = _skip_known(jvm_df, known)
            n_todo = _skip_known(meta, known).count() if known is not None else listed
            files_listed += listed
            files_skipped += listed - n_todo
            parts.append(_with_versions(todo, versions).mapInPandas(
                lambda it: process_batches(it, ctx), out_schema))
        log.info("ingest %s: %d file(s) listed, %d already ingested", run.run_id, files_listed,
                 files_skipped)
        rows = reduce(DataFrame.unionByName, parts)
        if staging:
            summary = _write_by_workers(spark, rows, staging, lake, run.run_id)
        else:
            summary = _write_by_spark(spark, settings, rows, labels, lake, ingest_date,
                                      run.run_id)
        counts = _counts(lake, summary, files_listed, files_skipped)
        manifest = run.manifest(
            spark, settings, counts,
            outputs={t: {"table": lake.path(t), **lake.commits.get(t, {})}
                     for t in INGEST_TABLES},
            inputs=list(request.inputs), input_lists=list(request.input_lists),
            labels=request.labels, label_from_path=request.label_from_path,
            ingest_date=ingest_date.isoformat(),
            pixel_writer="worker" if worker_tables else "spark")
    return manifest


def _commit_ingest_tables(spark: SparkSession, lake: Lake, run_id: str,
                          catalog_arrow: pa.Schema, spark_schemas: dict | None = None) -> None:
    """One Delta commit per table, pixels first (a catalog row's pixels are visible before
    it is); rows whose key is already committed are left out."""
    date_type = {"ingest_date": pa.date32()}
    for table, arrow in (("pixels", PIXEL_ARROW), ("catalog", catalog_arrow),
                         ("quarantine", QUARANTINE_ARROW)):
        lake.commit_staged(spark, table, run_id, "ingest", partition_by=["ingest_date"],
                           keys=list(_table_keys(table)), partition_types=date_type,
                           spark_schema=(spark_schemas or {}).get(table) or spark_schema(
                               with_labels(arrow, [pa.field("ingest_date", pa.date32())])))


def _table_keys(table: str) -> tuple[str, ...]:
    from medspark.lake import TABLES

    return TABLES[table].keys


def _write_by_workers(spark: SparkSession, rows: DataFrame, staging: Staging, lake: Lake,
                      run_id: str) -> dict:
    """Run the workers (they write the staged files) and commit what they wrote."""
    log.info("ingest %s: decoding; workers write catalog/, pixels/ and quarantine/ files",
             run_id)
    # a few count rows per task (one per batch and kind): summed on the driver, which spares
    # an aggregate's hash map per task, a shuffle and a final stage
    groups = rows.collect()
    log.info("ingest %s: committing the staged files", run_id)
    _commit_ingest_tables(spark, lake, run_id, staging.catalog_arrow)
    return _summary([g.asDict() for g in groups])


def _write_by_spark(spark: SparkSession, settings: Settings, rows: DataFrame,
                    labels: LabelLookup, lake: Lake, ingest_date: dt.date, run_id: str
                    ) -> dict:
    """Write the three tables with Spark (a lake the workers cannot write): the labelled rows
    come back from the workers, Spark writes each table's files into the run's stage folder
    and the driver commits them."""
    rows = rows.withColumn("ingest_date", F.lit(ingest_date)).persist(
        StorageLevel.DISK_ONLY)  # pixel bytes: spill, do not hold in memory
    try:
        log.info("ingest %s: reading and decoding", run_id)
        groups = rows.groupBy("kind", "error_class").agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(F.when((F.col("kind") != "plane") | (F.col("plane_index") == 0),
                           True)).alias("files"),
            F.count("label").alias("labelled"),
        ).collect()  # first action: decodes everything once, into the cache
        catalog_cols = CATALOG_ARROW.names + [c for c in labels.columns
                                              if c not in CATALOG_ARROW.names]
        frames = {
            "pixels": rows.where(F.col("kind") == "plane").select(*PIXEL_ARROW.names,
                                                                   "ingest_date"),
            "catalog": rows.where(F.col("kind").isin("plane", "object")).select(
                *catalog_cols, "ingest_date"),
            "quarantine": rows.where(F.col("kind") == "error").select(
                *QUARANTINE_ARROW.names, "ingest_date"),
        }
        for table, frame in frames.items():
            log.info("ingest %s: writing %s/", run_id, table)
            compression = settings.ingest.pixels_compression if table == "pixels" else "zstd"
            (frame.write.mode("append").option("compression", compression)
             .partitionBy("ingest_date").parquet(lake.run_dir(table, run_id)))
        _commit_ingest_tables(spark, lake, run_id, with_labels(
            CATALOG_ARROW, [f for f in labels.fields if f.name not in CATALOG_ARROW.names]),
            {t: f.schema for t, f in frames.items()})
    finally:
        rows.unpersist()
    return _summary([g.asDict() for g in groups])


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


def _counts(lake: Lake, summary: dict, files_listed: int, files_skipped: int) -> dict:
    """Counts of the run. Rows produced come from the workers' count rows; rows committed
    from the commits, which leave out rows already in a table (a re-run, a file copied under
    a second name): produced = committed + already present, or the run did not account for
    every file."""
    produced = {"catalog": summary["catalog_rows"], "pixels": summary["plane_rows"],
                "quarantine": summary["quarantine_rows"]}
    committed = {t: lake.commits.get(t, {}).get("rows", 0) for t in produced}
    present = {t: lake.commits.get(t, {}).get("duplicates_dropped", 0) for t in produced}
    consistent = all(committed[t] + present[t] == produced[t] for t in produced)
    if not consistent:
        log.error("rows committed %s + already present %s differ from rows produced %s",
                  committed, present, produced)
    processed = files_listed - files_skipped
    return {
        "files_listed": files_listed,
        "files_skipped_already_ingested": files_skipped,
        "files_processed": processed,
        "files_cataloged": summary["files_cataloged"],
        "image_files": summary["image_files"],
        "non_image_objects": summary["object_rows"],
        "files_quarantined": summary["quarantine_rows"],
        "quarantined_by_class": summary["quarantined_by_class"],
        "rows_produced": produced,
        "rows": committed,
        "rows_already_present": present,
        "labelled_catalog_rows": summary["labelled"],
        "all_files_accounted": consistent and (
            summary["files_cataloged"] + summary["quarantine_rows"] == processed),
    }
