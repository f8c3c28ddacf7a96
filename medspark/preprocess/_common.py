"""Array helpers of the preprocessing steps: channel handling, the dtypes OpenCV accepts, and
scalar-or-pair parameters. The helpers segmentation shares (image and spacing checks, grey
conversion, lengths in px/mm) are in `medspark.image`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# dtypes OpenCV's resize/warp/filters accept without conversion
CV_DTYPES = frozenset(np.dtype(t) for t in ("uint8", "uint16", "int16", "float32", "float64"))


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


def pair(value: int | float | tuple | list) -> tuple:
    """(v, v) for a scalar, the 2-tuple itself otherwise."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"expected a scalar or a pair, got {value!r}")
        return tuple(value)
    return value, value
