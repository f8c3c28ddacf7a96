"""Image planes as DataFrame rows, and back: the one encoding every stage shares.

A plane row has `image_id`, `height`, `width`, `channels`, `dtype`, `data` (raw little-endian
bytes of a (height, width, channels) array) and optionally `pixel_spacing_mm` (row, col) and a
`mask` (uint8 0/1 bytes of height x width). This module is pure numpy/pandas so the per-row
code is testable without Spark.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

IMAGE_COLUMNS = ("image_id", "height", "width", "channels", "dtype", "data")


def decode_plane(row: dict[str, Any]) -> np.ndarray:
    """(height, width, channels) array of a plane row (read-only view of its bytes)."""
    dtype = np.dtype(row["dtype"]).newbyteorder("<")
    shape = (int(row["height"]), int(row["width"]), int(row["channels"]))
    return np.frombuffer(row["data"], dtype=dtype).reshape(shape)


def encode_plane(image: np.ndarray) -> dict[str, Any]:
    """Plane columns (height, width, channels, dtype, data) of a 2D or 3D array."""
    arr = image if image.ndim == 3 else image[:, :, None]
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {"height": int(arr.shape[0]), "width": int(arr.shape[1]),
            "channels": int(arr.shape[2]), "dtype": arr.dtype.newbyteorder("=").name,
            "data": arr.tobytes()}


def decode_mask(row: dict[str, Any], column: str = "mask") -> np.ndarray | None:
    """Boolean (height, width) mask of a row, or None when it has none."""
    data = row.get(column)
    if data is None or (isinstance(data, float) and np.isnan(data)):
        return None
    shape = (int(row["height"]), int(row["width"]))
    return np.frombuffer(data, dtype=np.uint8).reshape(shape) > 0


def encode_mask(mask: np.ndarray | None) -> bytes | None:
    """uint8 0/1 bytes of a (height, width) mask."""
    if mask is None:
        return None
    return np.ascontiguousarray(np.asarray(mask, dtype=bool).reshape(mask.shape[:2]),
                                dtype=np.uint8).tobytes()


def spacing_of(row: dict[str, Any]) -> tuple[float, float] | None:
    """(row_mm, col_mm) of a plane row, or None when unknown."""
    sp = row.get("pixel_spacing_mm")
    if sp is None or len(sp) != 2:
        return None
    values = (float(sp[0]), float(sp[1]))
    return values if all(np.isfinite(v) and v > 0 for v in values) else None


def derived_id(image_id: str, *parts: object) -> str:
    """Deterministic id of an image derived from `image_id` (an augmented copy, ...)."""
    text = ":".join([image_id, *(str(p) for p in parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]
