"""Neighbouring Grey Tone Difference Matrix features, pyradiomics 3.0.1 ``RadiomicsNGTDM`` (2D).

For every ROI pixel the mean grey level of its in-ROI neighbours (all in-plane offsets at the
``distances``) comes from two correlations (``cv2.filter2D``: neighbour level sums and neighbour
counts, 0 outside the ROI); ``|level - neighbour mean|`` (0 for a pixel without ROI neighbours)
is summed per grey level with ``numpy.bincount``.
"""

from __future__ import annotations

import cv2
import numpy as np

from medspark.features.angles import angles as make_angles
from medspark.features.settings import Settings
from medspark.features.texture import Plane

NAMES = ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength")
MAX_PAIRS = 2 ** 24  # grey-level pairs (G ~ 4000) above which the pairwise features are NaN


def matrix(plane: Plane, settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(n_i, s_i, i)`` per present grey level; ``None`` if no offset fits the ROI."""
    offsets = make_angles(plane.shape, settings.distances, bidirectional=True)
    if len(offsets) == 0:
        return None
    radius = max(settings.distances)
    # Neighbour level sums and neighbour counts by correlation, zero outside the bounding box
    # (offsets that do not fit only meet that border). The sums are integers: exact in float32
    # below 2**24 with OpenCV's direct filter (kernels up to 9x9); larger kernels may go through
    # a DFT, so float64 and rint then.
    direct = radius <= 4 and plane.ng * len(offsets) < 2 ** 24
    depth = cv2.CV_32F if direct else cv2.CV_64F
    kernel = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=np.float32 if direct else np.float64)
    kernel[offsets[:, 0] + radius, offsets[:, 1] + radius] = 1
    levels = plane.levels
    if levels.dtype != np.int16:  # OpenCV filters no int32 input
        levels = levels.astype(np.float32 if direct else np.float64)
    sums = [np.take(cv2.filter2D(src, depth, kernel, borderType=cv2.BORDER_CONSTANT).ravel(),
                    plane.index)
            for src in (levels, plane.roi.view(np.uint8))]
    if not direct:
        sums = [np.rint(x) for x in sums]
    total, cnt = (x.astype(np.float64) for x in sums)
    grey = plane.roi_levels
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(cnt > 0, np.abs(grey - total / cnt), 0.0)
    n = np.bincount(grey, minlength=plane.ng + 1)[1:].astype(np.float64)
    s = np.bincount(grey, weights=diff, minlength=plane.ng + 1)[1:]
    present = n > 0
    return n[present], s[present], np.arange(1, plane.ng + 1, dtype=np.float64)[present]


def features(n: np.ndarray, s: np.ndarray, i: np.ndarray) -> dict[str, float]:
    """All NGTDM features from pixel counts ``n``, difference sums ``s`` and levels ``i``.

    Contrast, Busyness, Complexity and Strength sum over all pairs of grey levels; above
    :data:`MAX_PAIRS` pairs (thousands of levels; pyradiomics runs out of memory) they are NaN.
    """
    nvp = n.sum()
    p = n / nvp
    ngp = np.count_nonzero(n)
    sum_s = s.sum()
    coarse = np.sum(p * s)
    coarseness = 1 / coarse if coarse != 0 else 1e6
    if len(i) ** 2 > MAX_PAIRS:
        return {"Busyness": np.nan, "Coarseness": float(coarseness), "Complexity": np.nan,
                "Contrast": np.nan, "Strength": np.nan}
    di = i[:, None] - i[None, :]

    div = ngp * (ngp - 1)
    contrast = np.sum(p[:, None] * p[None, :] * di ** 2) * sum_s / nvp
    contrast = contrast / div if div != 0 else 0.0

    i_p = i * p
    absdiff = np.sum(np.abs(i_p[:, None] - i_p[None, :]))
    busyness = coarse / absdiff if absdiff != 0 else 0.0

    ps = p * s
    complexity = np.sum(np.abs(di) * (ps[:, None] + ps[None, :]) / (p[:, None] + p[None, :]))
    complexity = complexity / nvp

    strength = np.sum((p[:, None] + p[None, :]) * di ** 2)
    strength = strength / sum_s if sum_s != 0 else 0.0
    return {"Busyness": float(busyness), "Coarseness": float(coarseness),
            "Complexity": float(complexity), "Contrast": float(contrast),
            "Strength": float(strength)}


def compute(plane: Plane, settings: Settings) -> dict[str, float]:
    """NGTDM features of ``plane``; all NaN when no offset fits (pyradiomics fails there)."""
    m = matrix(plane, settings)
    if m is None:
        return dict.fromkeys(NAMES, np.nan)
    return features(*m)
