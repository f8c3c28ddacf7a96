"""Helpers shared by the preprocessing and segmentation steps: array shape/dtype handling and
pixel-spacing conversions.

Images are (H, W) or (H, W, C) arrays of any real dtype; `spacing` is (row_mm, col_mm) or None.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Spacing = tuple[float, float] | None
"""Pixel spacing (row_mm, col_mm), or None when unknown (e.g. PNG)."""

# dtypes OpenCV's resize/warp/filters accept without conversion
CV_DTYPES = frozenset(np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64"))


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


def as_float32(image: np.ndarray) -> np.ndarray:
    """`image` as float32 (no copy when it already is); bool becomes 0/1."""
    return np.asarray(image, dtype=np.float32)


def per_channel(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Apply a 2-D function to each channel of an (H, W, C) image; (H, W) goes straight through.

    The output keeps the input's layout, so an (H, W, 1) image stays (H, W, 1).
    """
    if image.ndim == 2:
        return fn(image)
    return np.stack([fn(image[:, :, c]) for c in range(image.shape[2])], axis=2)


def like_layout(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Restore a trailing channel axis that OpenCV drops for (H, W, 1) inputs."""
    if like.ndim == 3 and out.ndim == 2:
        return out[:, :, None]
    return out


def to_cv(image: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """A dtype OpenCV accepts for geometry: bool -> uint8, other ints -> float64 (exact)."""
    if image.dtype in CV_DTYPES:
        return image, image.dtype
    if image.dtype == np.bool_:
        return image.astype(np.uint8), image.dtype
    return image.astype(np.float64), image.dtype


def from_cv(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Undo `to_cv`: round and saturate back to the original dtype."""
    if out.dtype == dtype:
        return out
    if dtype == np.bool_:
        return out > 0
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype)


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


def pair(value: int | float | tuple | list) -> tuple:
    """(v, v) for a scalar, the 2-tuple itself otherwise."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"expected a scalar or a pair, got {value!r}")
        return tuple(value)
    return value, value
