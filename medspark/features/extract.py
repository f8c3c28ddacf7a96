"""``extract``: the chosen feature families of one 2D image plane.

Mirrors ``RadiomicsFeatureExtractor(force2D=True, force2Ddimension=0)`` on the ``Original`` image
with default pre-processing (no resampling, normalisation or re-segmentation): the ROI is
``mask == label``, checked like pyradiomics' ``checkMask``, cropped to its bounding box and
discretised once for all families (:class:`~medspark.features.context.Context`); each family
of :data:`~medspark.features.registry.REGISTRY` then computes from that context. Where
pyradiomics would raise, ``extract`` returns NaN:

* an empty ROI, a single-pixel ROI, or one failing ``minimumROIDimensions``/``minimumROISize``
  gives NaN for every feature;
* a GLCM/GLDM/NGTDM whose ``distances`` do not fit in the ROI bounding box gives NaN for that
  family;
* a GLCM, or the pairwise NGTDM features, whose grey-level matrices would exceed
  ``max_matrix_bytes`` give NaN, with an ``over_matrix_budget`` warning
  (:func:`extract_result`; see :mod:`medspark.features.context`).

Non-finite pixels (NaN, +-inf) are removed from the ROI first. Unlike pyradiomics, a mask with no
background (or no mask at all: the whole plane) is accepted, and shape2D is computed for a
one-column ROI (pyradiomics' extractor skips it there because of an axis-order slip).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medspark.features.allocator import keep_freed_memory
from medspark.features.context import MAX_MATRIX_BYTES, Context, check_budget
from medspark.features.extra import EXTRA_DEFAULTS, check_extra_settings
from medspark.features.registry import ALL_FAMILIES, FAMILIES, REGISTRY, Family
from medspark.features.settings import Settings, validate


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_result` found: ``values`` keyed ``<family>_<FeatureName>`` and the
    ``warnings`` (``<reason>: <detail>``) of families that gave NaN for a stated reason."""

    values: dict[str, float]
    warnings: tuple[str, ...] = ()


def _families(families: Iterable[str] | str | None) -> tuple[str, ...]:
    """The chosen families in output order; default: the seven pyradiomics families (the
    extra ones, histogram/lbp/hog, are opt-in)."""
    if families is None:
        return FAMILIES
    chosen = (families,) if isinstance(families, str) else tuple(families)
    for name in chosen:
        if name not in REGISTRY:
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


@functools.lru_cache(maxsize=128)
def _fixed_names(families: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{fam}_{name}" for fam in families for name in REGISTRY[fam].names)


def _output_names(chosen: tuple[str, ...], extra: dict[str, Any]) -> list[str]:
    if all(not callable(REGISTRY[f].names) for f in chosen):
        return list(_fixed_names(chosen))
    return [f"{fam}_{name}" for fam in chosen for name in REGISTRY[fam].feature_names(extra)]


def feature_names(families: Iterable[str] | str | None = None, **settings: Any) -> list[str]:
    """Output keys of :func:`extract` for ``families`` (default: the pyradiomics families), in
    output order; extra-family names depend on their settings (bins, orientations)."""
    _, extra = _split_settings(settings)
    return _output_names(_families(families), check_extra_settings(extra))


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


def roi_is_valid(roi: np.ndarray, settings: Settings) -> bool:
    """pyradiomics ``checkMask``: non-empty, >1 pixel, enough dimensions and pixels."""
    n = int(np.count_nonzero(roi))
    if n == 0:
        return False
    rows, cols = np.flatnonzero(roi.any(axis=1)), np.flatnonzero(roi.any(axis=0))
    ndims = int(rows[-1] > rows[0]) + int(cols[-1] > cols[0])
    if ndims == 0 or ndims < settings.minimumROIDimensions:
        return False
    return settings.minimumROISize is None or n > settings.minimumROISize


def _compute(family: Family, ctx: Context) -> dict[str, float]:
    """One family's outputs, prefixed, in the order of its names."""
    names = family.feature_names(ctx.extra)
    values = family.compute(ctx)
    if len(values) != len(names):
        raise RuntimeError(f"family {family.name} returned {sorted(values)}, expected {names}")
    return {f"{family.name}_{name}": float(values[name]) for name in names}


def extract_result(image: Any, mask: Any = None, spacing: Any = (1.0, 1.0),
                   families: Iterable[str] | str | None = None, *,
                   max_matrix_bytes: int = MAX_MATRIX_BYTES, **settings: Any) -> Extraction:
    """:func:`extract`, with the reasons (``over_matrix_budget: ...``) for features left NaN
    because a family's grey-level matrices would exceed ``max_matrix_bytes``."""
    keep_freed_memory()  # once per process; see medspark.features.allocator
    settings, extra = _split_settings(settings)
    cfg = validate(settings)
    extra_cfg = check_extra_settings(extra)
    budget = check_budget(max_matrix_bytes)
    chosen = _families(families)
    img = _as_plane(image)
    sp = _spacing(spacing)
    roi = _roi(img, mask, cfg.label)
    out: dict[str, float] = dict.fromkeys(_output_names(chosen, extra_cfg), np.nan)
    if not roi_is_valid(roi, cfg):
        return Extraction(out)
    ctx = Context(img, roi, sp, cfg, extra_cfg, budget)
    for name in chosen:
        out.update(_compute(REGISTRY[name], ctx))
    return Extraction(out, tuple(ctx.warnings))


def extract(image: Any, mask: Any = None, spacing: Any = (1.0, 1.0),
            families: Iterable[str] | str | None = None, *,
            max_matrix_bytes: int = MAX_MATRIX_BYTES, **settings: Any) -> dict[str, float]:
    """pyradiomics-equivalent features of one 2D plane, keyed ``<family>_<FeatureName>``.

    ``image``: 2D numeric array (NaN allowed, excluded from the ROI). ``mask``: same shape;
    the ROI is ``mask == label`` (a boolean mask is used as is); ``None`` = whole plane.
    ``spacing``: (row, col) pixel size in mm. ``families``: subset of
    :data:`~medspark.features.registry.ALL_FAMILIES` (default: the pyradiomics ones).
    ``max_matrix_bytes``: memory budget of one family's grey-level matrices (see
    :mod:`medspark.features.context`). ``settings``: pyradiomics setting names (see
    :mod:`medspark.features.settings`) and those of the extra families.
    """
    return extract_result(image, mask, spacing, families, max_matrix_bytes=max_matrix_bytes,
                          **settings).values
