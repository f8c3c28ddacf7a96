"""``extract``: all pyradiomics 3.0.1 feature families for one 2D image plane.

Mirrors ``RadiomicsFeatureExtractor(force2D=True, force2Ddimension=0)`` on the ``Original`` image
with default pre-processing (no resampling, normalisation or re-segmentation): the ROI is
``mask == label``, checked like pyradiomics' ``checkMask``, cropped to its bounding box and
discretised once for all families. Where pyradiomics would raise, ``extract`` returns NaN:

* an empty ROI, a single-pixel ROI, or one failing ``minimumROIDimensions``/``minimumROISize``
  gives NaN for every feature;
* a GLCM/GLDM/NGTDM whose ``distances`` do not fit in the ROI bounding box gives NaN for that
  family, and so do GLCM with more than ~2000 grey levels present and the pairwise NGTDM
  features with more than ~4000 (pyradiomics runs out of memory there).

Non-finite pixels (NaN, +-inf) are removed from the ROI first. Unlike pyradiomics, a mask with no
background (or no mask at all: the whole plane) is accepted, and shape2D is computed for a
one-column ROI (pyradiomics' extractor skips it there because of an axis-order slip).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import numpy as np

from medspark.features import firstorder, glcm, gldm, glrlm, glszm, ngtdm, shape2d
from medspark.features.allocator import keep_freed_memory
from medspark.features.discretize import discretize
from medspark.features.extra import (
    EXTRA_DEFAULTS,
    EXTRA_FAMILIES,
    check_extra_settings,
    extra_names,
    extract_extra,
)
from medspark.features.settings import Settings, validate
from medspark.features.texture import Plane

FAMILY_NAMES: dict[str, tuple[str, ...]] = {
    "firstorder": firstorder.NAMES,
    "shape2D": shape2d.NAMES,
    "glcm": glcm.NAMES,
    "glrlm": glrlm.NAMES,
    "glszm": glszm.NAMES,
    "gldm": gldm.NAMES,
    "ngtdm": ngtdm.NAMES,
}
FAMILIES: tuple[str, ...] = tuple(FAMILY_NAMES)


ALL_FAMILIES: tuple[str, ...] = FAMILIES + EXTRA_FAMILIES


def _families(families: Iterable[str] | str | None) -> tuple[str, ...]:
    """The chosen families in output order; default: the seven pyradiomics families (the
    extra ones, histogram/lbp/hog, are opt-in)."""
    if families is None:
        return FAMILIES
    chosen = (families,) if isinstance(families, str) else tuple(families)
    for name in chosen:
        if name not in ALL_FAMILIES:
            raise ValueError(
                f"unknown feature family {name!r} (valid: {', '.join(ALL_FAMILIES)})")
    return tuple(f for f in ALL_FAMILIES if f in chosen)


def _split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pyradiomics settings, settings of the extra families)."""
    extra = {k: v for k, v in settings.items() if k in EXTRA_DEFAULTS}
    return {k: v for k, v in settings.items() if k not in EXTRA_DEFAULTS}, extra


def check_settings(settings: dict[str, Any]) -> None:
    """Validate pyradiomics and extra-family settings together (ValueError naming the key)."""
    base, extra = _split_settings(dict(settings))
    validate(base)
    check_extra_settings(extra)


def feature_names(families: Iterable[str] | str | None = None, **settings: Any) -> list[str]:
    """Output keys of :func:`extract` for ``families`` (default: the pyradiomics families), in
    output order; extra-family names depend on their settings (bins, orientations)."""
    _, extra = _split_settings(settings)
    chosen = _families(families)
    names = list(_names(tuple(f for f in chosen if f in FAMILY_NAMES)))
    for fam in chosen:
        if fam in EXTRA_FAMILIES:
            names += extra_names(fam, extra)
    return names


@functools.lru_cache(maxsize=128)
def _names(families: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{fam}_{name}" for fam in families for name in FAMILY_NAMES[fam])


def _as_plane(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be a 2D array (one plane), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise ValueError(f"image must have a numeric dtype, got {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _roi(image: np.ndarray, mask: Any, label: int) -> np.ndarray:
    if mask is None:
        roi = np.ones(image.shape, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape != image.shape:
            raise ValueError(f"mask shape {m.shape} does not match image shape {image.shape}")
        roi = m.astype(bool) if m.dtype == bool else (m == label)
    return roi & np.isfinite(image)


def _spacing(spacing: Any) -> tuple[float, float]:
    try:
        sp = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        sp = ()
    if len(sp) != 2 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be two positive (row, col) sizes in mm, got {spacing!r}")
    return sp  # type: ignore[return-value]


def _extent(roi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows and of the columns that hold ROI pixels."""
    return np.flatnonzero(roi.any(axis=1)), np.flatnonzero(roi.any(axis=0))


def roi_is_valid(roi: np.ndarray, settings: Settings) -> bool:
    """pyradiomics ``checkMask``: non-empty, >1 pixel, enough dimensions and pixels."""
    n = int(np.count_nonzero(roi))
    if n == 0:
        return False
    rows, cols = _extent(roi)
    ndims = int(rows[-1] > rows[0]) + int(cols[-1] > cols[0])
    if ndims == 0 or ndims < settings.minimumROIDimensions:
        return False
    return settings.minimumROISize is None or n > settings.minimumROISize


def _bbox(roi: np.ndarray) -> tuple[slice, slice]:
    rows, cols = _extent(roi)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def extract(image: Any, mask: Any = None, spacing: Any = (1.0, 1.0),
            families: Iterable[str] | str | None = None, **settings: Any) -> dict[str, float]:
    """pyradiomics-equivalent features of one 2D plane, keyed ``<family>_<FeatureName>``.

    ``image``: 2D numeric array (NaN allowed, excluded from the ROI). ``mask``: same shape;
    the ROI is ``mask == label`` (a boolean mask is used as is); ``None`` = whole plane.
    ``spacing``: (row, col) pixel size in mm. ``families``: subset of :data:`FAMILIES`.
    ``settings``: pyradiomics setting names (see :mod:`medspark.features.settings`).
    """
    keep_freed_memory()  # once per process; see medspark.features.allocator
    settings, extra = _split_settings(settings)
    cfg = validate(settings)
    extra_cfg = check_extra_settings(extra)
    chosen = _families(families)
    img = _as_plane(image)
    sp = _spacing(spacing)
    roi = _roi(img, mask, cfg.label)
    out: dict[str, float] = dict.fromkeys(feature_names(chosen, **extra_cfg), np.nan)
    if not roi_is_valid(roi, cfg):
        return out
    for fam in chosen:
        if fam in EXTRA_FAMILIES:  # on the whole plane and ROI, not the discretised crop
            out.update(extract_extra(img, roi, fam, extra_cfg))
    chosen = tuple(f for f in chosen if f in FAMILY_NAMES)

    box = _bbox(roi)
    roi = np.ascontiguousarray(roi[box])
    index = np.flatnonzero(roi)  # gathers by index beat boolean-mask indexing several times
    values = np.take(np.ascontiguousarray(img[box]).ravel(), index)
    levels = discretize(values, cfg.binWidth, cfg.binCount)
    plane: Plane | None = None
    if any(f not in ("firstorder", "shape2D") for f in chosen):
        plane = Plane.build(levels, roi, index)

    for fam in chosen:
        if fam == "firstorder":
            vals = firstorder.compute(values, levels, sp[0] * sp[1], cfg.voxelArrayShift)
        elif fam == "shape2D":
            vals = shape2d.compute(roi, sp)
        elif fam == "glcm":
            vals = glcm.compute(plane, cfg, sp)
        elif fam == "glrlm":
            vals = glrlm.compute(plane, cfg, sp)
        elif fam == "glszm":
            vals = glszm.compute(plane)
        elif fam == "gldm":
            vals = gldm.compute(plane, cfg)
        else:
            vals = ngtdm.compute(plane, cfg)
        for name, value in vals.items():
            out[f"{fam}_{name}"] = float(value)
    return out
