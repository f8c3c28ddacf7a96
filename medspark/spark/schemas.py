"""Spark types of the ingest tables, derived from their Arrow schemas in `medspark.schema`."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from medspark.schema import (
    CATALOG_ARROW,
    INGEST_ROW_ARROW,
    PIXEL_ARROW,
    QUARANTINE_ARROW,
    SUMMARY_ARROW,
)


def spark_schema(schema: pa.Schema) -> StructType:
    """The Spark StructType of an Arrow schema (names, types and nullability kept)."""
    return from_arrow_schema(schema)


CATALOG = spark_schema(CATALOG_ARROW)
PIXELS = spark_schema(PIXEL_ARROW)
QUARANTINE = spark_schema(QUARANTINE_ARROW)
INGEST_ROW = spark_schema(INGEST_ROW_ARROW)
SUMMARY_ROW = spark_schema(SUMMARY_ARROW)
