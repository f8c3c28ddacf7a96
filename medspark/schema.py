"""Schemas of the ingest tables, defined once in Arrow (pure: no Spark import).

The Python workers write these tables' Parquet files with pyarrow; the Spark layer derives its
types from them (`medspark.spark.schemas`), so the ingest core imports without a JVM.
"""

from __future__ import annotations

import pyarrow as pa


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


# Columns of catalog/ written by ingest itself (label columns are appended at run time).
CATALOG_ARROW = pa.schema([
    _f("image_id", pa.string(), False),
    _f("source_path", pa.string(), False),
    _f("source_relpath", pa.string()),
    _f("source_sha256", pa.string(), False),
    _f("source_size", pa.int64()),
    _f("source_mtime", pa.int64()),
    # 1 for the first content seen under a path, +1 for each changed content after it: the
    # row set with the highest version of a path is its current version
    _f("source_version", pa.int32()),
    _f("format", pa.string(), False),
    _f("plane_index", pa.int32()),
    _f("n_planes", pa.int32(), False),
    _f("modality", pa.string()),
    _f("rows", pa.int32()),
    _f("cols", pa.int32()),
    _f("channels", pa.int32()),
    _f("dtype", pa.string()),
    _f("pixel_spacing_mm", pa.list_(pa.field("element", pa.float64()))),
    _f("slice_thickness_mm", pa.float64()),
    _f("slice_position", pa.float64()),
    _f("bits_stored", pa.int32()),
    _f("photometric", pa.string()),
    _f("manufacturer", pa.string()),
    _f("body_part", pa.string()),
    _f("sop_class_uid", pa.string()),
    _f("transfer_syntax_uid", pa.string()),
    _f("patient_pseudo_id", pa.string()),
    _f("study_pseudo_uid", pa.string()),
    _f("series_pseudo_uid", pa.string()),
    _f("sop_pseudo_uid", pa.string()),
    _f("accession_pseudo_id", pa.string()),
    _f("study_date", pa.date32()),
    _f("attributes", pa.map_(pa.string(), pa.string())),
    _f("run_id", pa.string()),
])

PIXEL_ARROW = pa.schema([
    _f("image_id", pa.string(), False),
    _f("height", pa.int32(), False),
    _f("width", pa.int32(), False),
    _f("channels", pa.int32(), False),
    _f("dtype", pa.string(), False),
    _f("data", pa.binary(), False),
])

QUARANTINE_ARROW = pa.schema([
    _f("source_path", pa.string(), False),
    _f("source_relpath", pa.string()),
    _f("source_size", pa.int64()),
    _f("source_mtime", pa.int64()),
    _f("stage", pa.string(), False),
    _f("error_class", pa.string(), False),
    _f("error_message", pa.string()),
    _f("run_id", pa.string()),
])

# What the ingest mapInPandas function emits when Spark writes the tables: one row per plane,
# per non-image object, or per failed file, told apart by `kind` (label columns appended per run).
_PIXEL_ONLY = [f for f in PIXEL_ARROW if f.name not in {"image_id", "channels", "dtype"}]
_QUARANTINE_ONLY = [f for f in QUARANTINE_ARROW if f.name in {"stage", "error_class",
                                                              "error_message"}]
INGEST_ROW_ARROW = pa.schema(
    [_f("kind", pa.string(), False)]
    + [f.with_nullable(True) for f in CATALOG_ARROW]
    + [f.with_nullable(True) for f in _PIXEL_ONLY + _QUARANTINE_ONLY])

# What the ingest workers return when they write the tables themselves: counts per batch.
SUMMARY_ARROW = pa.schema([
    _f("kind", pa.string(), False),
    _f("error_class", pa.string()),
    _f("rows", pa.int64(), False),
    _f("files", pa.int64(), False),
    _f("labelled", pa.int64(), False),
])


def with_labels(schema: pa.Schema, label_fields: list[pa.Field]) -> pa.Schema:
    """A schema with a run's label columns appended."""
    return pa.schema(list(schema) + list(label_fields))
