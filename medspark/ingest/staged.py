"""Worker-written lake tables: ingest rows straight to Parquet files in a run's staging folder.

On a local (or shared, mounted) lake the Python workers write `catalog/`, `pixels/` and
`quarantine/` files themselves, into each table's stage folder of the run
(`<table>/_stage/<run_id>/ingest_date=<d>/`), and hand Spark only a few count rows per batch;
the driver then commits the staged files to the Delta tables (`Lake.commit_staged`). Rows never
cross into the JVM, which on a small machine costs more than the decoding itself. Labels are
applied in the worker whichever writer runs (`LabelLookup`, one Python regex dialect for
`--label-from-path`). Pure pyarrow/pandas: tested without a JVM.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medspark.schema import CATALOG_ARROW, PIXEL_ARROW, QUARANTINE_ARROW, SUMMARY_ARROW

SUMMARY_COLUMNS = SUMMARY_ARROW.names


def label_arrow_fields(table: pd.DataFrame, columns: list[str]) -> list[pa.Field]:
    """Arrow fields of a label table's columns (timestamps in µs: Spark reads no ns)."""
    fields = []
    for f in pa.Schema.from_pandas(table[columns], preserve_index=False):
        name, typ = f.name, f.type
        if pa.types.is_timestamp(typ):
            typ = pa.timestamp("us", tz=typ.tz)
        elif pa.types.is_null(typ):
            typ = pa.string()
        fields.append(pa.field(name, typ))
    return fields


@dataclass(frozen=True)
class LabelLookup:
    """Label columns for catalog rows: from a table keyed by a catalog column, or a regex
    whose first group, searched in `source_path`, is the label."""

    columns: list[str]
    fields: list[pa.Field]
    join_col: str | None = None
    values: dict[str, tuple] = field(default_factory=dict)
    pattern: str | None = None

    @classmethod
    def from_table(cls, table: pd.DataFrame, join_col: str) -> LabelLookup:
        columns = [c for c in table.columns if c != join_col]
        fields = label_arrow_fields(table, columns)
        converted = pa.Table.from_pandas(table[columns], preserve_index=False).cast(
            pa.schema(fields)).to_pylist()
        keys = table[join_col].tolist()
        return cls(columns, fields, join_col,
                   {k: tuple(r[c] for c in columns) for k, r in zip(keys, converted,
                                                                    strict=True)})

    @classmethod
    def from_regex(cls, pattern: str) -> LabelLookup:
        return cls(["label"], [pa.field("label", pa.string())], pattern=pattern)

    @classmethod
    def empty(cls) -> LabelLookup:
        return cls(["label"], [pa.field("label", pa.string())])

    def conform(self, table: dict[str, pa.DataType]) -> LabelLookup:
        """This run's label columns as the catalog table already has them (`table`: its label
        columns and types): a column the run lacks is added (null), a value of another type
        is cast (`1` -> `"1"`), so a run without labels, or with labels read as integers,
        appends to a catalog labelled otherwise. A column the table lacks stays (the schema
        check then names it); a value that cannot be cast is a ValueError naming the column."""
        columns = list(self.columns) + [c for c in table if c not in self.columns]
        fields = [pa.field(c, table[c]) if c in table else next(
            f for f in self.fields if f.name == c) for c in columns]
        values = {}
        if self.values:
            for i, f in enumerate(fields[:len(self.columns)]):
                old = self.fields[i]
                if old.type.equals(f.type):
                    continue
                try:
                    pa.array([v[i] for v in self.values.values()], old.type).cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise ValueError(f"label column {f.name!r}: this run's values are "
                                     f"{old.type}, the catalog's {f.type}: {e}") from None
            keys = list(self.values)
            cols = [pa.array([self.values[k][i] for k in keys], self.fields[i].type)
                    .cast(fields[i].type).to_pylist() for i in range(len(self.columns))]
            pad = len(columns) - len(self.columns)
            values = {k: tuple(c[j] for c in cols) + (None,) * pad
                      for j, k in enumerate(keys)}
        elif self.pattern is not None and not fields[0].type.equals(pa.string()):
            raise ValueError(f"--label-from-path gives text labels; the catalog's 'label' is "
                             f"{fields[0].type}")
        return LabelLookup(columns, fields, self.join_col, values, self.pattern)

    def apply(self, row: dict[str, Any]) -> None:
        """Add the label columns to one catalog row (null when it has no label); the regex is
        Python's `re`, searched in the source path, for either writer."""
        if self.pattern is not None:
            m = re.search(self.pattern, row["source_path"])
            row["label"] = (m.group(1) or None) if m else None
            for name in self.columns[1:]:
                row[name] = None
            return
        found = self.values.get(row.get(self.join_col)) if self.join_col else None
        for i, name in enumerate(self.columns):
            row[name] = found[i] if found else None


@dataclass(frozen=True)
class Staging:
    """Where a run's workers write each table, and the catalog's schema with its labels."""

    pixels: str
    catalog: str
    quarantine: str
    labels: LabelLookup
    compression: str = "zstd"

    @cached_property
    def catalog_arrow(self) -> pa.Schema:
        """The catalog's schema with this run's label columns (built once per worker)."""
        return pa.schema(list(CATALOG_ARROW) + self.labels.fields)


def staged_name(keys: Iterable[str]) -> str:
    """A file name from its rows' keys: a retried or speculative task rewrites the same file
    instead of adding a duplicate."""
    return "part-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24] + ".parquet"


def write_staged(table: pa.Table, directory: str, name: str, **options: Any) -> None:
    """Write one Parquet file under a temporary name and rename it into place."""
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, **options)
    os.replace(tmp, os.path.join(directory, name))


def write_pixel_file(rows: list[dict[str, Any]], directory: str, compression: str) -> str:
    """Write plane rows' pixels as one Parquet file; returns its (content-derived) name."""
    name = staged_name(r["image_id"] for r in rows)
    table = pa.Table.from_pydict({c: [r[c] for r in rows] for c in PIXEL_ARROW.names},
                                 schema=PIXEL_ARROW)
    # no dictionary for the pixel bytes: hashing 512 KiB values only to find them unique
    write_staged(table, directory, name, compression=compression,
                 use_dictionary=["image_id", "dtype"])
    return name


def stage_rows(rows: list[dict[str, Any]], staging: Staging) -> pd.DataFrame:
    """Write one batch of ingest rows to the three staged tables; return its count rows
    (one per kind and error class: rows, files, labelled)."""
    catalog = [r for r in rows if r["kind"] in ("plane", "object")]
    planes = [r for r in catalog if r["kind"] == "plane"]
    errors = [r for r in rows if r["kind"] == "error"]
    if planes:
        write_pixel_file(planes, staging.pixels, staging.compression)
    if catalog:  # labelled already (records._flush)
        write_staged(pa.Table.from_pylist(catalog, schema=staging.catalog_arrow),
                     staging.catalog, staged_name(r["image_id"] for r in catalog))
    if errors:
        write_staged(pa.Table.from_pylist(errors, schema=QUARANTINE_ARROW),
                     staging.quarantine, staged_name(r["source_path"] for r in errors))
    return summarise_rows(rows)


def summarise_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Count rows of one batch: rows, files (a file's plane 0, object or error row) and
    labelled rows, per kind and error class."""
    counts: dict[tuple[str, str | None], list[int]] = {}
    for r in rows:
        key = (r["kind"], r.get("error_class"))
        c = counts.setdefault(key, [0, 0, 0])
        c[0] += 1
        c[1] += r["kind"] != "plane" or r.get("plane_index") == 0
        c[2] += r["kind"] != "error" and r.get("label") is not None
    return pd.DataFrame([(k, e, *c) for (k, e), c in counts.items()], columns=SUMMARY_COLUMNS)
