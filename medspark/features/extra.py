"""Feature families beyond pyradiomics: intensity histogram, LBP histogram, HOG statistics.

Each works on one 2D plane and a boolean ROI, like the pyradiomics families, and has a fixed
list of output names so the Spark layer knows its columns before it runs:

* ``histogram``: ROI intensities in ``histogramBins`` equal bins over ``histogramRange``
  (default: the ROI's own min..max), as fractions of the ROI;
* ``lbp``: rotation-invariant uniform local binary patterns (scikit-image, ``lbpPoints``
  neighbours at ``lbpRadius`` px), histogram of the P + 2 codes inside the ROI;
* ``hog``: histogram of oriented gradients (scikit-image) of the ROI's bounding box, summarised
  as mean, standard deviation, maximum and entropy of the descriptor and the mean energy per
  orientation, which stay comparable between ROIs of different sizes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage import feature as skfeature

if TYPE_CHECKING:
    from medspark.features.context import Context

EXTRA_DEFAULTS: dict[str, Any] = {
    "histogramBins": 16,
    "histogramRange": None,
    "lbpPoints": 8,
    "lbpRadius": 1.0,
    "hogOrientations": 9,
    "hogPixelsPerCell": 8,
}
EXTRA_FAMILIES = ("histogram", "lbp", "hog")


def check_extra_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """EXTRA_DEFAULTS merged with the extra-family keys of `settings`, validated."""
    cfg = {**EXTRA_DEFAULTS, **{k: v for k, v in settings.items() if k in EXTRA_DEFAULTS}}
    for key in ("histogramBins", "lbpPoints", "hogOrientations", "hogPixelsPerCell"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"feature setting {key!r} must be an integer >= 2, got {value!r}")
    if not isinstance(cfg["lbpRadius"], int | float) or cfg["lbpRadius"] <= 0:
        raise ValueError(f"feature setting 'lbpRadius' must be > 0, got {cfg['lbpRadius']!r}")
    rng = cfg["histogramRange"]
    if rng is not None and (len(rng) != 2 or not float(rng[0]) < float(rng[1])):
        raise ValueError(f"feature setting 'histogramRange' must be [low, high], got {rng!r}")
    return cfg


def histogram_names(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """``Bin00`` .. one per ``histogramBins``."""
    return tuple(f"Bin{i:02d}" for i in range(check_extra_settings(settings)["histogramBins"]))


def lbp_names(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """``Bin00`` .. one per uniform LBP code (``lbpPoints`` + 2)."""
    return tuple(f"Bin{i:02d}" for i in range(check_extra_settings(settings)["lbpPoints"] + 2))


def hog_names(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The four descriptor statistics, then ``Orientation0`` .. per ``hogOrientations``."""
    n = check_extra_settings(settings)["hogOrientations"]
    return ("Mean", "StandardDeviation", "Maximum", "Entropy",
            *(f"Orientation{i}" for i in range(n)))


def _histogram(values: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    low, high = cfg["histogramRange"] or (float(values.min()), float(values.max()))
    if high <= low:  # constant ROI: everything in the first bin
        high = low + 1.0
    counts, _ = np.histogram(np.clip(values, low, high), bins=cfg["histogramBins"],
                             range=(low, high))
    return counts / values.size


def _lbp(image: np.ndarray, roi: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    points = cfg["lbpPoints"]
    filled = np.where(np.isfinite(image), image, 0.0)
    with warnings.catch_warnings():  # float input is intended: HU and normalised images
        warnings.simplefilter("ignore", UserWarning)
        codes = skfeature.local_binary_pattern(filled, points, cfg["lbpRadius"], method="uniform")
    counts = np.bincount(codes[roi].astype(np.int64), minlength=points + 2)[: points + 2]
    return counts / max(int(roi.sum()), 1)


def _hog(image: np.ndarray, roi: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    rows, cols = np.nonzero(roi)
    crop = image[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    crop = np.where(np.isfinite(crop), crop, 0.0)
    cell, n_orient = cfg["hogPixelsPerCell"], cfg["hogOrientations"]
    if min(crop.shape) < cell:  # too small for one cell: pad with the ROI's mean
        crop = np.pad(crop, [(0, max(0, cell - s)) for s in crop.shape], mode="mean")
    cells = skfeature.hog(crop, orientations=n_orient, pixels_per_cell=(cell, cell),
                cells_per_block=(1, 1), feature_vector=False)  # (ny, nx, 1, 1, orient)
    desc = cells.reshape(-1, n_orient)
    flat = desc.ravel()
    p = flat / flat.sum() if flat.sum() > 0 else np.zeros_like(flat)
    entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    return np.concatenate([[flat.mean(), flat.std(), flat.max(), entropy], desc.mean(axis=0)])


def _named(names: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def histogram(ctx: Context) -> dict[str, float]:
    """The ``histogram`` family of the context's ROI intensities."""
    return _named(histogram_names(ctx.extra), _histogram(ctx.image[ctx.roi], dict(ctx.extra)))


def lbp(ctx: Context) -> dict[str, float]:
    """The ``lbp`` family on the context's whole plane, counted inside its ROI."""
    return _named(lbp_names(ctx.extra), _lbp(ctx.image, ctx.roi, dict(ctx.extra)))


def hog(ctx: Context) -> dict[str, float]:
    """The ``hog`` family of the context's ROI bounding box."""
    return _named(hog_names(ctx.extra), _hog(ctx.image, ctx.roi, dict(ctx.extra)))
