"""Data types shared by the pure readers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ReadError(Exception):
    """A file that cannot become catalog rows; becomes one quarantine row.

    `error_class` is a short, stable snake_case reason (`truncated`, `not_an_image`,
    `over_limit_file_bytes`, ...). The message must never contain header values.
    """

    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Resource guards checked from headers before any pixel is decoded."""

    max_file_bytes: int = 2 * 1024**3
    max_pixels_per_plane: int = 64 * 1024 * 1024
    max_planes_per_file: int = 4096

    def check_plane(self, rows: int, cols: int) -> None:
        if rows * cols > self.max_pixels_per_plane:
            raise ReadError(
                "over_limit_pixels_per_plane",
                f"plane of {rows}x{cols} pixels exceeds limit {self.max_pixels_per_plane}",
            )

    def check_planes(self, n_planes: int) -> None:
        if n_planes > self.max_planes_per_file:
            raise ReadError(
                "over_limit_planes_per_file",
                f"{n_planes} planes exceed limit {self.max_planes_per_file}",
            )

    def check_file_bytes(self, size: int) -> None:
        if size > self.max_file_bytes:
            raise ReadError(
                "over_limit_file_bytes",
                f"file of {size} bytes exceeds limit {self.max_file_bytes}",
            )


@dataclass
class DecodedImage:
    """One decoded file.

    `pixels` has shape (planes, rows, cols, channels), already in the modality's physical units
    (HU for CT) and in the smallest dtype that holds the values exactly. Non-image DICOM objects
    (SR, RTSTRUCT, SEG, ...) have zero planes and `pixels` is None.

    `identifiers` holds the raw identifying values (patient id, UIDs, accession, study date) that
    the Spark layer pseudonymises before anything is written; `phi_values` are all identifying
    strings seen in the header, used to scrub messages. `attributes` holds only non-identifying
    header attributes, already filtered by the de-identification profile.
    """

    format: str  # dicom | nifti | png | jpeg | tiff
    pixels: np.ndarray | None
    n_planes: int
    rows: int
    cols: int
    channels: int
    modality: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_thickness_mm: float | None = None
    slice_positions: list[float | None] | None = None
    bits_stored: int | None = None
    photometric: str | None = None
    manufacturer: str | None = None
    body_part: str | None = None
    sop_class_uid: str | None = None
    transfer_syntax_uid: str | None = None
    identifiers: dict[str, str | None] = field(default_factory=dict)
    phi_values: set[str] = field(default_factory=set)
    attributes: dict[str, str] = field(default_factory=dict)
