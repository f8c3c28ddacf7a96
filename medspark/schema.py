"""Spark schemas of the lake tables, in one place."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

# Columns of catalog/ written by ingest itself (label columns are appended at run time).
CATALOG_FIELDS = [
    StructField("image_id", StringType(), False),
    StructField("source_path", StringType(), False),
    StructField("source_relpath", StringType(), True),
    StructField("source_sha256", StringType(), False),
    StructField("source_size", LongType(), True),
    StructField("source_mtime", LongType(), True),
    StructField("format", StringType(), False),
    StructField("plane_index", IntegerType(), True),
    StructField("n_planes", IntegerType(), False),
    StructField("modality", StringType(), True),
    StructField("rows", IntegerType(), True),
    StructField("cols", IntegerType(), True),
    StructField("channels", IntegerType(), True),
    StructField("dtype", StringType(), True),
    StructField("pixel_spacing_mm", ArrayType(DoubleType()), True),
    StructField("slice_thickness_mm", DoubleType(), True),
    StructField("slice_position", DoubleType(), True),
    StructField("bits_stored", IntegerType(), True),
    StructField("photometric", StringType(), True),
    StructField("manufacturer", StringType(), True),
    StructField("body_part", StringType(), True),
    StructField("sop_class_uid", StringType(), True),
    StructField("transfer_syntax_uid", StringType(), True),
    StructField("patient_pseudo_id", StringType(), True),
    StructField("study_pseudo_uid", StringType(), True),
    StructField("series_pseudo_uid", StringType(), True),
    StructField("sop_pseudo_uid", StringType(), True),
    StructField("accession_pseudo_id", StringType(), True),
    StructField("study_date", DateType(), True),
    StructField("attributes", MapType(StringType(), StringType()), True),
    StructField("run_id", StringType(), True),
]

PIXEL_FIELDS = [
    StructField("image_id", StringType(), False),
    StructField("height", IntegerType(), False),
    StructField("width", IntegerType(), False),
    StructField("channels", IntegerType(), False),
    StructField("dtype", StringType(), False),
    StructField("data", BinaryType(), False),
]

QUARANTINE_FIELDS = [
    StructField("source_path", StringType(), False),
    StructField("source_relpath", StringType(), True),
    StructField("source_size", LongType(), True),
    StructField("source_mtime", LongType(), True),
    StructField("stage", StringType(), False),
    StructField("error_class", StringType(), False),
    StructField("error_message", StringType(), True),
    StructField("run_id", StringType(), True),
]

# What the ingest mapInPandas function emits: one row per plane, per non-image object, or per
# failed file, told apart by `kind`; the writer splits it into the three tables.
_PIXEL_ONLY = [f for f in PIXEL_FIELDS if f.name not in {"image_id", "channels", "dtype"}]
_QUARANTINE_ONLY = [f for f in QUARANTINE_FIELDS if f.name in {"stage", "error_class",
                                                                "error_message"}]
INGEST_ROW = StructType(
    [StructField("kind", StringType(), False)]
    + [StructField(f.name, f.dataType, True) for f in CATALOG_FIELDS]
    + [StructField(f.name, f.dataType, True) for f in _PIXEL_ONLY + _QUARANTINE_ONLY]
)
# What the ingest workers return when they write the tables themselves: counts per batch.
SUMMARY_ROW = StructType([
    StructField("kind", StringType(), False),
    StructField("error_class", StringType(), True),
    StructField("rows", LongType(), False),
    StructField("files", LongType(), False),
    StructField("labelled", LongType(), False),
])

CATALOG = StructType(CATALOG_FIELDS)
PIXELS = StructType(PIXEL_FIELDS)
QUARANTINE = StructType(QUARANTINE_FIELDS)
