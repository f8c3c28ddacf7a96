"""Intensity steps: CT windowing, clipping, normalisation, gamma, histogram equalisation, CLAHE.

Each is `f(image, spacing, **params) -> (image, spacing)` and returns float32 (except `cast`),
spacing unchanged. Statistics (min/max, mean/std, percentiles, histograms) are computed per
channel, optionally only over the pixels of a boolean `mask` (H, W).
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage import exposure

from medspark.image import Spacing, check_image
from medspark.preprocess._common import as_float32, pair, per_channel

# (center, width) in HU. lung, mediastinum, bone and brain follow the Radiopaedia "Windowing (CT)"
# article (lungs W1500/L-600, mediastinum W350/L50, bone W1800/L400, brain W80/L40); abdomen is
# the usual soft-tissue window W400/L40 and liver W150/L30. Sources differ (e.g. bone W2000/L500):
# give center/width explicitly when a protocol needs other values.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
    "liver": (30.0, 150.0),
}


def window_bounds(
    preset: str | None = None, center: float | None = None, width: float | None = None
) -> tuple[float, float]:
    """(lower, upper) HU of a preset or of center/width (exactly one of the two forms)."""
    if (preset is None) == (center is None or width is None):
        raise ValueError("window needs either preset or both center and width, not both")
    if preset is not None:
        if preset not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {preset!r}; known: {sorted(WINDOW_PRESETS)}")
        center, width = WINDOW_PRESETS[preset]
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return center - width / 2.0, center + width / 2.0


def window(
    image: np.ndarray,
    spacing: Spacing,
    *,
    preset: str | None = None,
    center: float | None = None,
    width: float | None = None,
    out_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, Spacing]:
    """Map [center - width/2, center + width/2] linearly onto `out_range`, clipping outside.

    The window centre maps to the middle of `out_range` (0.5 by default).
    """
    image = check_image(image)
    lower, upper = window_bounds(preset, center, width)
    lo, hi = (float(v) for v in out_range)
    x = (as_float32(image) - np.float32(lower)) * np.float32((hi - lo) / (upper - lower))
    out = np.clip(x + np.float32(lo), min(lo, hi), max(lo, hi))
    return out.astype(np.float32, copy=False), spacing


def clip(
    image: np.ndarray, spacing: Spacing, *, lower: float | None = None, upper: float | None = None
) -> tuple[np.ndarray, Spacing]:
    """Clip values to [lower, upper] (either bound may be omitted)."""
    image = check_image(image)
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"clip lower {lower} is above upper {upper}")
    return np.clip(as_float32(image), lower, upper).astype(np.float32, copy=False), spacing


def _values(channel: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return channel
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != channel.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image {channel.shape}")
    if not mask.any():
        raise ValueError("mask is empty: no pixels to compute statistics from")
    return channel[mask]


def _affine(channel: np.ndarray, lo: float, hi: float, out: tuple[float, float]) -> np.ndarray:
    """Map [lo, hi] linearly onto `out`; a flat range maps everything to out[0]."""
    scale = (out[1] - out[0]) / (hi - lo) if hi > lo else 0.0
    x = (as_float32(channel) - np.float32(lo)) * np.float32(scale) + np.float32(out[0])
    return x.astype(np.float32, copy=False)


def minmax(
    image: np.ndarray,
    spacing: Spacing,
    *,
    out_range: tuple[float, float] = (0.0, 1.0),
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Spacing]:
    """Scale [min, max] (of the mask's pixels, if given) onto `out_range`."""
    image = check_image(image)

    def one(ch: np.ndarray) -> np.ndarray:
        v = _values(ch, mask)
        return _affine(ch, float(v.min()), float(v.max()), out_range)

    return per_channel(one, image), spacing


def zscore(
    image: np.ndarray, spacing: Spacing, *, mask: np.ndarray | None = None
) -> tuple[np.ndarray, Spacing]:
    """(x - mean) / std (over the mask's pixels, if given); a constant image gives zeros."""
    image = check_image(image)

    def one(ch: np.ndarray) -> np.ndarray:
        v = _values(ch, mask).astype(np.float64)
        mean, std = float(v.mean()), float(v.std())
        x = as_float32(ch) - np.float32(mean)
        if std > 0:
            x = x / np.float32(std)
        return x.astype(np.float32, copy=False)

    return per_channel(one, image), spacing


def _percentile_range(
    ch: np.ndarray, mask: np.ndarray | None, lower: float, upper: float
) -> tuple[float, float]:
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"percentiles need 0 <= lower < upper <= 100, got {lower}, {upper}")
    lo, hi = np.percentile(_values(ch, mask), [lower, upper])
    return float(lo), float(hi)


def percentile_normalize(
    image: np.ndarray,
    spacing: Spacing,
    *,
    lower: float = 1.0,
    upper: float = 99.0,
    clip: bool = False,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Spacing]:
    """Robust scaling: the `lower` and `upper` percentiles map to 0 and 1; values beyond stay
    beyond unless `clip`."""
    image = check_image(image)

    def one(ch: np.ndarray) -> np.ndarray:
        x = _affine(ch, *_percentile_range(ch, mask, lower, upper), (0.0, 1.0))
        return np.clip(x, 0.0, 1.0) if clip else x

    return per_channel(one, image), spacing


def contrast_stretch(
    image: np.ndarray,
    spacing: Spacing,
    *,
    lower: float = 2.0,
    upper: float = 98.0,
    out_range: tuple[float, float] = (0.0, 1.0),
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Spacing]:
    """Contrast stretching: map the [lower, upper] percentiles onto `out_range`, clipping
    (skimage's rescale_intensity with percentile input range)."""
    image = check_image(image)
    lo_out, hi_out = (float(v) for v in out_range)

    def one(ch: np.ndarray) -> np.ndarray:
        x = _affine(ch, *_percentile_range(ch, mask, lower, upper), (lo_out, hi_out))
        return np.clip(x, min(lo_out, hi_out), max(lo_out, hi_out))

    return per_channel(one, image), spacing


def _unit_interval(image: np.ndarray, step: str) -> np.ndarray:
    """float32 in [0, 1]: unsigned ints divided by their dtype maximum, floats clipped."""
    if image.dtype == np.bool_:
        return as_float32(image)
    if image.dtype.kind == "u":
        return as_float32(image) / np.float32(np.iinfo(image.dtype).max)
    if image.dtype.kind == "i":
        raise ValueError(
            f"{step} expects values in [0, 1] (or unsigned integers); got signed {image.dtype} "
            "data: apply window or minmax first"
        )
    return np.clip(as_float32(image), 0.0, 1.0)


def gamma(
    image: np.ndarray, spacing: Spacing, *, gamma: float, gain: float = 1.0
) -> tuple[np.ndarray, Spacing]:
    """gain * x**gamma on [0, 1] data (uint8/uint16 scaled by their maximum, floats clipped).
    gamma < 1 brightens dark regions, > 1 darkens them."""
    image = check_image(image)
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    x = _unit_interval(image, "gamma")
    return (np.float32(gain) * np.power(x, np.float32(gamma))).astype(np.float32), spacing


def equalize_hist(
    image: np.ndarray, spacing: Spacing, *, nbins: int = 256, mask: np.ndarray | None = None
) -> tuple[np.ndarray, Spacing]:
    """Global histogram equalisation (skimage) to [0, 1]; the histogram may come from a mask."""
    image = check_image(image)

    def one(ch: np.ndarray) -> np.ndarray:
        _values(ch, mask)  # shape / emptiness check
        return exposure.equalize_hist(ch, nbins=nbins, mask=mask).astype(np.float32)

    return per_channel(one, image), spacing


def _clahe_input_range(ch: np.ndarray) -> tuple[float, float]:
    lo, hi = float(ch.min()), float(ch.max())
    if ch.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0  # already display-scaled (e.g. after window): keep its absolute scale
    return lo, (hi if hi > lo else lo + 1.0)


def clahe(
    image: np.ndarray,
    spacing: Spacing,
    *,
    clip_limit: float = 2.0,
    tile_grid: int | tuple[int, int] = (8, 8),
    in_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, Spacing]:
    """Contrast-limited adaptive histogram equalisation (OpenCV), output float32 in [0, 1].

    clip_limit is OpenCV's (relative to a uniform histogram; 2-4 is typical); tile_grid is
    (rows, cols) of tiles. OpenCV's 16-bit CLAHE uses 65536 bins, which makes the clip limit
    meaningless for small tiles, so non-uint8 input is mapped to 8 bits first: from `in_range`,
    else [0, 1] for floats already within it (e.g. after window), else the image's min..max.
    """
    image = check_image(image)
    rows, cols = (int(v) for v in pair(tile_grid))
    if rows < 1 or cols < 1 or clip_limit <= 0:
        raise ValueError("clahe needs clip_limit > 0 and a positive tile_grid")
    engine = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(cols, rows))

    def one(ch: np.ndarray) -> np.ndarray:
        if ch.dtype == np.uint8 and in_range is None:
            u8 = np.ascontiguousarray(ch)
        else:
            lo, hi = in_range if in_range is not None else _clahe_input_range(ch)
            x = _affine(ch, float(lo), float(hi), (0.0, 255.0))
            u8 = np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)
        return engine.apply(u8).astype(np.float32) / np.float32(255.0)

    return per_channel(one, image), spacing


CAST_DTYPES = ("uint8", "uint16", "int16", "float32")


def cast(
    image: np.ndarray, spacing: Spacing, *, dtype: str, scale: float = 1.0, offset: float = 0.0
) -> tuple[np.ndarray, Spacing]:
    """x * scale + offset converted to `dtype` (rounded and saturated for integers), e.g.
    `{dtype: uint8, scale: 255}` after a [0, 1] window, for compact storage or export."""
    image = check_image(image)
    if dtype not in CAST_DTYPES:
        raise ValueError(f"cast dtype must be one of {CAST_DTYPES}, got {dtype!r}")
    x = as_float32(image) * np.float32(scale) + np.float32(offset)
    target = np.dtype(dtype)
    if target.kind in "iu":
        info = np.iinfo(target)
        x = np.clip(np.rint(x), info.min, info.max)
    return x.astype(target), spacing


def apply_mask(
    image: np.ndarray, spacing: Spacing, *, mask: np.ndarray, fill: float = 0.0
) -> tuple[np.ndarray, Spacing]:
    """Keep pixels inside `mask`, set the others to `fill` (float32 output)."""
    image = check_image(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    keep = mask if image.ndim == 2 else mask[:, :, None]
    return np.where(keep, as_float32(image), np.float32(fill)).astype(np.float32), spacing
