"""One image plane as a numpy array, and its pixel spacing: the checks and unit conversions that
the preprocessing (`medspark.preprocess`) and segmentation (`medspark.segment`) steps share.

It sits below both packages, so neither has to import the other for these helpers. Images are
(H, W) or (H, W, C) arrays of any real dtype; `spacing` is (row_mm, col_mm) or None.
"""

from __future__ import annotations

import numpy as np

Spacing = tuple[float, float] | None
"""Pixel spacing (row_mm, col_mm), or None when unknown (e.g. PNG)."""


def check_image(image: np.ndarray) -> np.ndarray:
    """Return `image` as an ndarray after checking it is (H, W) or (H, W, C) and real-valued."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.dtype.kind not in "biuf":
        raise TypeError(f"image dtype must be real numeric, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image


def check_spacing(spacing: Spacing) -> Spacing:
    """Normalise `spacing` to a (row_mm, col_mm) float tuple or None; reject non-positive."""
    if spacing is None:
        return None
    row, col = (float(s) for s in spacing)
    if not (row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col)):
        raise ValueError(f"spacing must be two positive finite numbers, got {spacing!r}")
    return row, col


def to_gray(image: np.ndarray) -> np.ndarray:
    """A 2-D image for segmentation: (H, W, 1) is squeezed; RGB(A) becomes float32 luma
    (ITU-R BT.601 weights, channels in RGB order as medspark's readers give them)."""
    image = check_image(image)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] in (3, 4):
        rgb = image[:, :, :3].astype(np.float32)
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    raise ValueError(f"cannot make a grey image from {image.shape[2]} channels")


def length_to_px(value: float, spacing: Spacing, units: str, what: str) -> tuple[float, float]:
    """A length in `units` ("px" or "mm") as (rows_px, cols_px); mm needs a known spacing."""
    if units == "px":
        return float(value), float(value)
    if units != "mm":
        raise ValueError(f"{what}: units must be 'px' or 'mm', got {units!r}")
    if spacing is None:
        raise ValueError(f"{what} is in mm but the image has no pixel spacing; use units: px")
    row_mm, col_mm = check_spacing(spacing)
    return float(value) / row_mm, float(value) / col_mm


def area_to_px(value: float, spacing: Spacing, units: str, what: str) -> float:
    """An area in `units` ("px" = pixel count, "mm" = mm^2) as a pixel count."""
    if units == "px":
        return float(value)
    rows, cols = length_to_px(1.0, spacing, units, what)
    return float(value) * rows * cols
