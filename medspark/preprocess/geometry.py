"""Geometry steps: resize, resample to a pixel spacing, crop, pad, rotate, flip.

Each is `f(image, spacing, **params) -> (image, spacing)`. The output keeps the input's dtype
(interpolated integers are rounded and saturated) and channel layout, and `spacing` is updated to
the physical size of an output pixel. The same call with `interpolation="nearest"` and a zero
fill transforms a mask consistently (the pipeline does this for you).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from medspark.image import Spacing, check_image, check_spacing
from medspark.preprocess._common import from_cv, like_layout, pair, to_cv

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST_EXACT,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
# warpAffine has no exact-nearest nor area mode
WARP_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
BORDERS = {
    "constant": cv2.BORDER_CONSTANT,
    "edge": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
}
_MAX_CV_CHANNELS = 4


def _cv_apply(image: np.ndarray, fn) -> np.ndarray:
    """Run an OpenCV geometry call on any dtype and channel count, keeping both."""
    work, dtype = to_cv(image)
    if work.ndim == 3 and work.shape[2] > _MAX_CV_CHANNELS:
        out = np.stack([fn(work[:, :, c]) for c in range(work.shape[2])], axis=2)
    else:
        out = like_layout(fn(work), work)
    return from_cv(out, dtype)


def _resize_to(image: np.ndarray, rows: int, cols: int, interpolation: str) -> np.ndarray:
    h, w = image.shape[:2]
    if (rows, cols) == (h, w):
        return image.copy()
    if interpolation == "auto":
        interpolation = "area" if rows <= h and cols <= w else "linear"
    flag = INTERPOLATIONS[interpolation]
    return _cv_apply(image, lambda a: cv2.resize(a, (cols, rows), interpolation=flag))


def _scaled_spacing(spacing: Spacing, old: tuple[int, int], new: tuple[int, int]) -> Spacing:
    """Spacing after resampling `old` pixels to `new` over the same field of view."""
    if spacing is None:
        return None
    row_mm, col_mm = check_spacing(spacing)
    return row_mm * old[0] / new[0], col_mm * old[1] / new[1]


def _fill_array(shape: tuple[int, ...], value: float, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise ValueError(f"pad value {value} does not fit the image dtype {dtype}")
    return np.full(shape, value, dtype=dtype)


def _pad_centered(
    image: np.ndarray, rows: int, cols: int, mode: str, value: float
) -> np.ndarray:
    """Pad symmetrically (extra pixel at the bottom/right) up to at least rows x cols."""
    h, w = image.shape[:2]
    dr, dc = max(rows - h, 0), max(cols - w, 0)
    if dr == 0 and dc == 0:
        return image.copy()
    widths = [(dr // 2, dr - dr // 2), (dc // 2, dc - dc // 2)] + [(0, 0)] * (image.ndim - 2)
    if mode == "constant":
        out = _fill_array((h + dr, w + dc, *image.shape[2:]), value, image.dtype)
        out[widths[0][0] : widths[0][0] + h, widths[1][0] : widths[1][0] + w] = image
        return out
    if mode not in ("edge", "reflect"):
        raise ValueError(f"pad mode must be constant, edge or reflect, got {mode!r}")
    return np.pad(image, widths, mode=mode)


def resize(
    image: np.ndarray,
    spacing: Spacing,
    *,
    size: int | tuple[int, int],
    keep_aspect: bool = False,
    interpolation: str = "auto",
    pad_value: float = 0.0,
) -> tuple[np.ndarray, Spacing]:
    """Resize to `size` = (rows, cols) (an int means square).

    keep_aspect: scale by the smaller factor and pad the rest (centred) with `pad_value`, so
    anatomy is not distorted. interpolation: nearest, linear, cubic, area, lanczos, or auto
    (area when shrinking, linear when enlarging). Spacing is scaled by the actual factors.
    """
    image = check_image(image)
    rows, cols = (int(v) for v in pair(size))
    if rows < 1 or cols < 1:
        raise ValueError(f"resize size must be positive, got {size!r}")
    h, w = image.shape[:2]
    if not keep_aspect:
        return _resize_to(image, rows, cols, interpolation), _scaled_spacing(
            spacing, (h, w), (rows, cols)
        )
    scale = min(rows / h, cols / w)
    inner = (max(1, min(rows, round(h * scale))), max(1, min(cols, round(w * scale))))
    out = _resize_to(image, *inner, interpolation)
    out = _pad_centered(out, rows, cols, "constant", pad_value)
    return out, _scaled_spacing(spacing, (h, w), inner)


def resample(
    image: np.ndarray,
    spacing: Spacing,
    *,
    target_spacing: float | tuple[float, float],
    interpolation: str = "auto",
) -> tuple[np.ndarray, Spacing]:
    """Resample to a pixel spacing in mm (scalar = isotropic) over the same field of view.

    The new shape is round(shape * spacing / target); the returned spacing is the exact one of
    that grid (equal to the target up to rounding of the shape).
    """
    image = check_image(image)
    if spacing is None:
        raise ValueError("resample needs the image's pixel spacing, which is unknown")
    row_mm, col_mm = check_spacing(spacing)
    t_row, t_col = (float(v) for v in pair(target_spacing))
    if t_row <= 0 or t_col <= 0:
        raise ValueError(f"target_spacing must be positive, got {target_spacing!r}")
    h, w = image.shape[:2]
    rows = max(1, round(h * row_mm / t_row))
    cols = max(1, round(w * col_mm / t_col))
    out = _resize_to(image, rows, cols, interpolation)
    return out, _scaled_spacing((row_mm, col_mm), (h, w), (rows, cols))


def crop(
    image: np.ndarray, spacing: Spacing, *, top: int, left: int, height: int, width: int
) -> tuple[np.ndarray, Spacing]:
    """Crop the box (top, left, height, width), clipped to the image; an empty box raises."""
    image = check_image(image)
    h, w = image.shape[:2]
    r0, c0 = max(0, int(top)), max(0, int(left))
    r1, c1 = min(h, int(top) + int(height)), min(w, int(left) + int(width))
    if r1 <= r0 or c1 <= c0:
        raise ValueError(
            f"crop box (top={top}, left={left}, height={height}, width={width}) lies outside "
            f"the {h}x{w} image"
        )
    return image[r0:r1, c0:c1].copy(), spacing


def center_crop(
    image: np.ndarray, spacing: Spacing, *, size: int | tuple[int, int], pad_value: float = 0.0
) -> tuple[np.ndarray, Spacing]:
    """Crop the central `size` = (rows, cols); dimensions smaller than that are padded with
    `pad_value`, so the output is always exactly `size`."""
    image = check_image(image)
    rows, cols = (int(v) for v in pair(size))
    h, w = image.shape[:2]
    r0, c0 = max(0, (h - rows) // 2), max(0, (w - cols) // 2)
    out = image[r0 : r0 + rows, c0 : c0 + cols]
    return _pad_centered(out, rows, cols, "constant", pad_value), spacing


def pad(
    image: np.ndarray,
    spacing: Spacing,
    *,
    size: int | tuple[int, int],
    mode: str = "constant",
    value: float = 0.0,
) -> tuple[np.ndarray, Spacing]:
    """Pad (centred) to at least `size` = (rows, cols); never crops.

    mode: constant (with `value`), edge (repeat the border pixel) or reflect (mirror without
    repeating the border pixel).
    """
    image = check_image(image)
    rows, cols = (int(v) for v in pair(size))
    return _pad_centered(image, rows, cols, mode, value), spacing


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    *,
    interpolation: str = "linear",
    fill: str = "constant",
    value: float = 0.0,
) -> np.ndarray:
    """Apply a 2x3 forward affine matrix in (x=col, y=row) pixel coordinates, keeping the shape
    and dtype. fill: constant (with `value`), edge or reflect for pixels mapped from outside."""
    image = check_image(image)
    h, w = image.shape[:2]
    flag = WARP_INTERPOLATIONS[interpolation]
    border = BORDERS[fill]
    if fill == "constant" and image.dtype.kind in "iu":
        _fill_array((), value, image.dtype)  # range check
    m = np.asarray(matrix, dtype=np.float64)
    return _cv_apply(
        image,
        lambda a: cv2.warpAffine(
            a, m, (w, h), flags=flag, borderMode=border, borderValue=(value,) * 4
        ),
    )


def affine_about_center(
    shape: tuple[int, int],
    spacing: Spacing,
    *,
    angle: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    flip_h: bool = False,
    flip_v: bool = False,
) -> np.ndarray:
    """Forward 2x3 matrix: flip, then rotate `angle` degrees counter-clockwise and zoom by
    `scale` about the image centre in physical (mm) space, then shift by (rows, cols) pixels.

    Working in mm keeps a rotation rigid when row and column spacings differ.
    """
    h, w = shape
    sy, sx = check_spacing(spacing) or (1.0, 1.0)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    # rounding makes quarter turns exact (cos 90 deg is 6e-17 in floating point)
    a, b = round(math.cos(math.radians(angle)), 12), round(math.sin(math.radians(angle)), 12)
    rot = scale * np.array([[a, b * sy / sx], [-b * sx / sy, a]])
    flip = np.diag([-1.0 if flip_h else 1.0, -1.0 if flip_v else 1.0])
    lin = rot @ flip
    centre = np.array([cx, cy])
    t = centre - lin @ centre + np.array([shift[1], shift[0]])
    return np.hstack([lin, t[:, None]])


def rotate(
    image: np.ndarray,
    spacing: Spacing,
    *,
    angle: float,
    interpolation: str = "linear",
    fill: str = "constant",
    value: float = 0.0,
) -> tuple[np.ndarray, Spacing]:
    """Rotate by `angle` degrees counter-clockwise about the centre, keeping the size
    (corners are cut; uncovered pixels get `fill`). A 90-degree turn of a square image equals
    np.rot90. With anisotropic spacing the rotation is done in mm, so shapes stay rigid."""
    image = check_image(image)
    m = affine_about_center(image.shape[:2], spacing, angle=angle)
    return warp_affine(image, m, interpolation=interpolation, fill=fill, value=value), spacing


def flip(
    image: np.ndarray, spacing: Spacing, *, axis: str = "horizontal"
) -> tuple[np.ndarray, Spacing]:
    """Mirror left-right (horizontal), top-bottom (vertical) or both."""
    image = check_image(image)
    axes = {"horizontal": (1,), "vertical": (0,), "both": (0, 1)}
    if axis not in axes:
        raise ValueError(f"flip axis must be horizontal, vertical or both, got {axis!r}")
    return np.ascontiguousarray(np.flip(image, axis=axes[axis])), spacing
