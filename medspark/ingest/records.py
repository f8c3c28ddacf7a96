"""Turn one input file into ingest rows: catalog+pixel rows per plane, or one quarantine row.

This is the pure core of the ingest job. `process_batches` is the function Spark's
`mapInPandas` runs on each partition, but it only needs pandas, so it is tested without a JVM.
Identifiers are pseudonymised here, inside the worker, so raw values never reach the JVM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medspark.ingest.source_read import read_source
from medspark.ingest.staged import LabelLookup, Staging, stage_rows
from medspark.io.read import read_image
from medspark.io.types import DecodedImage, Limits, ReadError
from medspark.privacy.profile import scrub
from medspark.privacy.pseudonym import Pseudonymizer
from medspark.schema import INGEST_ROW_ARROW
from medspark.worker import freeze_long_lived

ROW_COLUMNS = INGEST_ROW_ARROW.names


@dataclass(frozen=True)
class IngestContext:
    """What every worker needs; pickled into the Spark closure."""

    limits: Limits
    key: bytes
    max_shift_days: int
    run_id: str
    batch_bytes: int = 16 * 1024 * 1024  # as ingest.batch_bytes
    staging: Staging | None = None  # set: workers write the tables' files themselves
    labels: LabelLookup = field(default_factory=LabelLookup.empty)
    read_timeout_s: float = 120.0  # as ingest.limits.read_timeout_s

    def pseudonymizer(self) -> Pseudonymizer:
        return Pseudonymizer(self.key, self.max_shift_days)


def image_id(source_sha256: str, plane_index: int) -> str:
    """Deterministic id of one plane: the same bytes give the same ids in every run."""
    return hashlib.sha256(f"{source_sha256}:{plane_index}".encode()).hexdigest()[:32]


def _value(v: Any) -> Any:
    """A listing value as Python: NaN/None -> None, numpy integers -> int."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    return int(v) if hasattr(v, "dtype") and v.dtype.kind in "iu" else v


def _base(source: dict[str, Any]) -> dict[str, Any]:
    size, mtime = _value(source.get("size")), _value(source.get("mtime"))
    previous = _value(source.get("prev_version"))
    return {
        "source_version": 1 + (int(previous) if previous is not None else 0),
        "source_path": source["path"],
        "source_relpath": _value(source.get("relpath")),
        "source_size": None if size is None else int(size),
        "source_mtime": None if mtime is None else int(mtime),
    }


def error_row(source: dict[str, Any], stage: str, error_class: str, message: str,
              run_id: str) -> dict[str, Any]:
    return {**_base(source), "kind": "error", "stage": stage, "error_class": error_class,
            "error_message": message[:500], "run_id": run_id}


def _catalog_fields(img: DecodedImage, pseudo: Pseudonymizer) -> dict[str, Any]:
    ids = img.identifiers
    patient = ids.get("patient_id")
    spacing = [float(v) for v in img.pixel_spacing_mm] if img.pixel_spacing_mm else None
    return {
        "format": img.format,
        "n_planes": img.n_planes,
        "modality": img.modality,
        "channels": img.channels,
        "dtype": str(img.pixels.dtype) if img.pixels is not None else None,
        "pixel_spacing_mm": spacing,
        "slice_thickness_mm": img.slice_thickness_mm,
        "bits_stored": img.bits_stored,
        "photometric": img.photometric,
        "manufacturer": img.manufacturer,
        "body_part": img.body_part,
        "sop_class_uid": img.sop_class_uid,
        "transfer_syntax_uid": img.transfer_syntax_uid,
        "patient_pseudo_id": pseudo.pseudonym("patient", patient),
        "study_pseudo_uid": pseudo.pseudonym("study", ids.get("study_uid")),
        "series_pseudo_uid": pseudo.pseudonym("series", ids.get("series_uid")),
        "sop_pseudo_uid": pseudo.pseudonym("sop", ids.get("sop_uid")),
        "accession_pseudo_id": pseudo.pseudonym("accession", ids.get("accession_number")),
        "study_date": pseudo.shift_date(ids.get("study_date"), patient),
        "attributes": dict(img.attributes),
    }


def file_rows(source: dict[str, Any], data: bytes, ctx: IngestContext,
              pseudo: Pseudonymizer) -> Iterator[dict[str, Any]]:
    """Rows for one file: a `plane` row per plane, one `object` row, or one `error` row."""
    phi: set[str] = set()
    try:
        img = read_image(data, ctx.limits, name=source["path"])
    except ReadError as e:
        stage = "limits" if e.error_class.startswith("over_limit") else "decode"
        yield error_row(source, stage, e.error_class, scrub(e.message, phi), ctx.run_id)
        return
    except Exception as e:  # noqa: BLE001 - a reader bug must not fail the job
        yield error_row(source, "decode", "decode_error", scrub(type(e).__name__, phi),
                        ctx.run_id)
        return
    sha = hashlib.sha256(data).hexdigest()
    common = {**_base(source), "source_sha256": sha, "run_id": ctx.run_id,
              **_catalog_fields(img, pseudo)}
    if img.n_planes == 0 or img.pixels is None:
        yield {**common, "kind": "object", "image_id": image_id(sha, -1), "plane_index": None,
               "rows": img.rows or None, "cols": img.cols or None}
        return
    pixels = img.pixels
    little = pixels.dtype.newbyteorder("<")
    positions = img.slice_positions or []
    for index in range(img.n_planes):
        plane = np.ascontiguousarray(pixels[index], dtype=little)
        yield {
            **common,
            "kind": "plane",
            "image_id": image_id(sha, index),
            "plane_index": index,
            "rows": int(plane.shape[0]),
            "cols": int(plane.shape[1]),
            "height": int(plane.shape[0]),
            "width": int(plane.shape[1]),
            "slice_position": positions[index] if index < len(positions) else None,
            "data": plane.tobytes(),
        }


def source_rows(source: dict[str, Any], content: bytes | None, ctx: IngestContext,
                pseudo: Pseudonymizer) -> Iterator[dict[str, Any]]:
    """Read (unless the JVM already shipped `content`) and decode one listed file."""
    problem = _value(source.get("problem"))
    if problem:  # found by the listing (e.g. a name Spark cannot carry): never opened
        error_class, _, message = problem.partition(": ")
        yield error_row(source, "read", error_class, message, ctx.run_id)
        return
    try:
        size = source.get("size")
        if size is not None and not pd.isna(size):
            ctx.limits.check_file_bytes(int(size))
        data = content if content is not None else read_source(
            source["path"], ctx.limits, ctx.read_timeout_s)
    except ReadError as e:
        stage = "limits" if e.error_class.startswith("over_limit") else "read"
        yield error_row(source, stage, e.error_class, e.message, ctx.run_id)
        return
    except FileNotFoundError:
        yield error_row(source, "read", "file_not_found", "file does not exist", ctx.run_id)
        return
    except (IsADirectoryError, PermissionError, OSError) as e:
        yield error_row(source, "read", "read_error", type(e).__name__, ctx.run_id)
        return
    if not source.get("size") or pd.isna(source.get("size")):
        source = {**source, "size": len(data)}
    yield from file_rows(source, data, ctx, pseudo)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Rows as a frame; absent fields are None (not NaN, which Arrow cannot put in a list)."""
    return pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object)
                         for c in columns})


def row_columns(labels: LabelLookup) -> list[str]:
    """The columns of ingest rows returned to Spark: INGEST_ROW plus the run's labels."""
    return list(ROW_COLUMNS) + [c for c in labels.columns if c not in ROW_COLUMNS]


def _flush(rows: list[dict[str, Any]], ctx: IngestContext) -> pd.DataFrame:
    """One output batch: the rows themselves, or (worker-written tables) their count rows.
    Labels are applied here, once, for either writer."""
    for row in rows:
        if row["kind"] != "error":
            ctx.labels.apply(row)
    return stage_rows(rows, ctx.staging) if ctx.staging else _frame(rows, row_columns(
        ctx.labels))


def process_batches(batches: Iterable[pd.DataFrame], ctx: IngestContext
                    ) -> Iterator[pd.DataFrame]:
    """`mapInPandas` body: listed files in, ingest rows out, in bounded-size batches."""
    freeze_long_lived()
    pseudo = ctx.pseudonymizer()
    rows: list[dict[str, Any]] = []
    pending = 0
    for batch in batches:
        has_content = "content" in batch.columns
        for record in batch.to_dict("records"):
            content = record.pop("content", None) if has_content else None
            for row in source_rows(record, content, ctx, pseudo):
                rows.append(row)
                pending += len(row.get("data") or b"")
            if pending >= ctx.batch_bytes:  # between files: a file's planes share one batch
                yield _flush(rows, ctx)
                rows, pending = [], 0
    if rows:
        yield _flush(rows, ctx)
