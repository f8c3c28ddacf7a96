r"""Neighbouring Grey Tone Difference Matrix features, pyradiomics 3.0.1 ``RadiomicsNGTDM`` (2D).

Definition: for every ROI pixel of grey level :math:`i`, :math:`\bar A` is the mean grey level
of its neighbours in the ROI (every in-plane offset at the ``distances``); :math:`n_i` counts
the pixels of level :math:`i`, :math:`s_i = \sum |i - \bar A|` sums their differences (0 for a
pixel without neighbours in the ROI). Notation: :math:`N_{vp} = \sum n_i`, :math:`p_i = n_i /
N_{vp}`, :math:`N_{gp}` the number of levels with :math:`p_i \ne 0`; sums run over those levels.

``Coarseness``
    :math:`1 / \sum_i p_i s_i` (:math:`10^6` when the sum is 0): the spatial rate of change;
    high for a coarse, slowly changing texture.
``Contrast``
    :math:`\left(\frac{1}{N_{gp}(N_{gp}-1)} \sum_{i,j} p_i p_j (i-j)^2\right)
    \left(\frac{1}{N_{vp}} \sum_i s_i\right)`: intensity differences between neighbourhoods
    together with the dynamic range.
``Busyness``
    :math:`\sum_i p_i s_i / \sum_{i,j} |i p_i - j p_j|`: rapid changes between neighbouring
    pixels.
``Complexity``
    :math:`\frac{1}{N_{vp}} \sum_{i,j} |i-j| \frac{p_i s_i + p_j s_j}{p_i + p_j}`:
    non-uniformity and many rapid changes of grey level.
``Strength``
    :math:`\sum_{i,j} (p_i + p_j)(i-j)^2 / \sum_i s_i`: large, clearly visible primitives.

How: the neighbour level sums and neighbour counts come from two correlations
(``cv2.filter2D``, 0 outside the ROI), and :math:`n_i`, :math:`s_i` are binned over the grey
levels present, so nothing is sized by the largest level. Contrast, Busyness, Complexity and
Strength sum over all pairs of present levels: G x G temporaries (:func:`pairwise_bytes`); above
the context's ``max_matrix_bytes`` those four are NaN with an ``over_matrix_budget`` warning,
and Coarseness is still computed (G above ~2300 with the default 256 MiB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from medspark.features.angles import angles as make_angles
from medspark.features.settings import Settings
from medspark.features.texture import Plane

if TYPE_CHECKING:
    from medspark.features.context import Context

NAMES = ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength")
PAIRWISE = ("Busyness", "Complexity", "Contrast", "Strength")
PAIR_ARRAYS = 6  # G x G float64 arrays alive at once in pairwise(), at most (measured)


def pairwise_bytes(n_levels: int) -> int:
    """Peak bytes of :func:`pairwise` over ``n_levels`` grey levels: an upper bound."""
    return 8 * PAIR_ARRAYS * n_levels * n_levels


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
    if levels.dtype != np.int16:  # OpenCV filters no int32/int64 input
        levels = levels.astype(np.float32 if direct else np.float64)
    sums = [np.take(cv2.filter2D(src, depth, kernel, borderType=cv2.BORDER_CONSTANT).ravel(),
                    plane.index)
            for src in (levels, plane.roi.view(np.uint8))]
    if not direct:
        sums = [np.rint(x) for x in sums]
    total, cnt = (x.astype(np.float64) for x in sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(cnt > 0, np.abs(plane.roi_levels - total / cnt), 0.0)
    g = plane.n_levels
    n = np.bincount(plane.roi_ranks, minlength=g + 1)[1:].astype(np.float64)
    s = np.bincount(plane.roi_ranks, weights=diff, minlength=g + 1)[1:]
    return n, s, plane.grey_levels.astype(np.float64)


def coarseness(n: np.ndarray, s: np.ndarray) -> float:
    """Coarseness from pixel counts ``n`` and difference sums ``s`` per grey level."""
    coarse = np.sum(n / n.sum() * s)
    return float(1 / coarse) if coarse != 0 else 1e6


def pairwise(n: np.ndarray, s: np.ndarray, i: np.ndarray) -> dict[str, float]:
    """Contrast, Busyness, Complexity and Strength: sums over all pairs of grey levels."""
    nvp = n.sum()
    p = n / nvp
    ngp = np.count_nonzero(n)
    sum_s = s.sum()
    di = i[:, None] - i[None, :]
    di2 = di * di

    div = ngp * (ngp - 1)
    contrast = np.sum(p[:, None] * p[None, :] * di2) * sum_s / nvp
    contrast = contrast / div if div != 0 else 0.0

    i_p = i * p
    absdiff = np.sum(np.abs(i_p[:, None] - i_p[None, :]))
    coarse = np.sum(p * s)
    busyness = coarse / absdiff if absdiff != 0 else 0.0

    ps = p * s
    complexity = np.sum(np.abs(di) * (ps[:, None] + ps[None, :]) / (p[:, None] + p[None, :]))
    complexity = complexity / nvp

    strength = np.sum((p[:, None] + p[None, :]) * di2)
    strength = strength / sum_s if sum_s != 0 else 0.0
    return {"Busyness": float(busyness), "Complexity": float(complexity),
            "Contrast": float(contrast), "Strength": float(strength)}


def compute(ctx: Context) -> dict[str, float]:
    """NGTDM features of the context's plane; all NaN when no offset fits (pyradiomics fails
    there), the pairwise ones NaN over the memory budget."""
    m = matrix(ctx.plane, ctx.settings)
    if m is None:
        return dict.fromkeys(NAMES, np.nan)
    n, s, i = m
    out = {"Coarseness": coarseness(n, s), **dict.fromkeys(PAIRWISE, np.nan)}
    if ctx.allow(f"ngtdm ({', '.join(PAIRWISE)})", pairwise_bytes(len(i))):
        out.update(pairwise(n, s, i))
    return out
