"""Connected components of masks: keep the largest / top-k, drop small ones or those touching
the border. Each is `f(mask, spacing, **params) -> mask` (bool); connectivity is 4 or 8."""

from __future__ import annotations

import cv2
import numpy as np

from medspark.image import Spacing, area_to_px
from medspark.segment.morphology import as_mask


def label(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 (H, W) with 0 = background, areas in pixels indexed by label)."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    m = np.ascontiguousarray(as_mask(mask)).view(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=connectivity)
    return labels, stats[:, cv2.CC_STAT_AREA].astype(np.int64)


def _keep(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mask of the labels in `keep` (never background)."""
    lut = np.zeros(int(labels.max()) + 1, dtype=bool)
    lut[keep] = True
    lut[0] = False
    return lut[labels]


def top_k(mask: np.ndarray, spacing: Spacing = None, *, k: int, connectivity: int = 8):
    """The `k` largest components (ties broken by position: first in raster order wins)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    labels, areas = label(mask, connectivity)
    order = np.argsort(-areas[1:], kind="stable")[:k] + 1
    return _keep(labels, order)


def largest(mask: np.ndarray, spacing: Spacing = None, *, connectivity: int = 8) -> np.ndarray:
    """The largest component only (empty mask stays empty)."""
    return top_k(mask, spacing, k=1, connectivity=connectivity)


def min_area(
    mask: np.ndarray,
    spacing: Spacing = None,
    *,
    area: float,
    units: str = "px",
    connectivity: int = 8,
) -> np.ndarray:
    """Components of at least `area` pixels (units px) or mm^2 (units mm)."""
    limit = area_to_px(area, spacing, units, "min_area area")
    labels, areas = label(mask, connectivity)
    return _keep(labels, np.flatnonzero(areas >= limit))


def clear_border(mask: np.ndarray, spacing: Spacing = None, *, connectivity: int = 8):
    """Remove components touching the image border (e.g. air outside the patient)."""
    labels, _ = label(mask, connectivity)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = np.setdiff1d(np.arange(1, int(labels.max()) + 1), edge)
    return _keep(labels, keep)
