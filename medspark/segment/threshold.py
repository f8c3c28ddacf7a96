"""Threshold segmentation: fixed range, HU range (with tissue presets), Otsu, adaptive.

Each is `f(image, spacing, **params) -> mask`, a bool (H, W) array; colour images are reduced
to luma first (see `medspark.image.to_gray`).
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_local, threshold_otsu

from medspark.image import Spacing, to_gray

# HU ranges, inclusive; None = unbounded. fat and muscle are the body-composition ranges of
# Mitsiopoulos et al. 1998 (J Appl Physiol 85:115) used by the Alberta protocol; lung matches
# the lung_mask threshold; bone >= 300 HU also catches calcifications and dense contrast.
HU_PRESETS: dict[str, tuple[float | None, float | None]] = {
    "air": (None, -900.0),
    "lung": (-1000.0, -400.0),
    "fat": (-190.0, -30.0),
    "muscle": (-29.0, 150.0),
    "bone": (300.0, None),
}


def _check_foreground(foreground: str) -> None:
    if foreground not in ("bright", "dark"):
        raise ValueError(f"foreground must be 'bright' or 'dark', got {foreground!r}")


def fixed(
    image: np.ndarray, spacing: Spacing, *, lower: float | None = None, upper: float | None = None
) -> np.ndarray:
    """Pixels with lower <= value <= upper (either bound may be omitted, not both)."""
    if lower is None and upper is None:
        raise ValueError("threshold needs lower, upper or both")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"threshold lower {lower} is above upper {upper}")
    x = to_gray(image)
    out = np.ones(x.shape, dtype=bool)
    if lower is not None:
        out &= x >= lower
    if upper is not None:
        out &= x <= upper
    return out


def hu_range(
    image: np.ndarray,
    spacing: Spacing,
    *,
    preset: str | None = None,
    lower: float | None = None,
    upper: float | None = None,
) -> np.ndarray:
    """CT pixels within a HU range: a tissue `preset` (air, lung, fat, muscle, bone) or
    explicit lower/upper bounds, not both."""
    if preset is not None:
        if lower is not None or upper is not None:
            raise ValueError("hu_range takes either preset or lower/upper, not both")
        if preset not in HU_PRESETS:
            raise ValueError(f"unknown HU preset {preset!r}; known: {sorted(HU_PRESETS)}")
        lower, upper = HU_PRESETS[preset]
    return fixed(image, spacing, lower=lower, upper=upper)


def otsu(
    image: np.ndarray,
    spacing: Spacing,
    *,
    nbins: int = 256,
    foreground: str = "bright",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Otsu's threshold (skimage): pixels above it (foreground bright) or at/below it (dark).
    With a mask, the threshold comes from the mask's pixels and the result stays inside it."""
    _check_foreground(foreground)
    x = to_gray(image)
    values = x
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image {x.shape}")
        if not mask.any():
            raise ValueError("mask is empty: no pixels to compute the Otsu threshold from")
        values = x[mask]
    if values.min() == values.max():
        out = np.zeros(x.shape, dtype=bool)
    else:
        t = threshold_otsu(values, nbins=nbins)
        out = x > t if foreground == "bright" else x <= t
    return out & mask if mask is not None else out


def adaptive(
    image: np.ndarray,
    spacing: Spacing,
    *,
    block_size: int = 35,
    offset: float = 0.0,
    method: str = "gaussian",
    foreground: str = "bright",
) -> np.ndarray:
    """Local threshold (skimage threshold_local): bright foreground is x > local mean + offset,
    dark is x < local mean - offset, so a positive offset (image units) is stricter either way
    (the opposite sign of skimage's and OpenCV's constant). block_size is the odd neighbourhood
    size in pixels, method gaussian, mean or median. Copes with uneven illumination."""
    _check_foreground(foreground)
    if block_size < 3 or block_size % 2 == 0:
        raise ValueError(f"block_size must be an odd integer >= 3, got {block_size}")
    x = to_gray(image).astype(np.float32)
    local = threshold_local(x, block_size, method=method, offset=0.0, mode="reflect")
    return x > local + offset if foreground == "bright" else x < local - offset
