r"""Grey Level Size Zone Matrix features, pyradiomics 3.0.1 ``RadiomicsGLSZM`` (2D).

Definition: a zone is a group of 8-connected ROI pixels with one grey level; :math:`P(i,j)`
counts the zones of grey level :math:`i` and size :math:`j` pixels. Notation: :math:`N_z =
\sum P` the number of zones, :math:`N_p` the ROI pixels, :math:`p(i,j) = P(i,j)/N_z`,
:math:`p_g(i) = \sum_j P(i,j)`, :math:`p_s(j) = \sum_i P(i,j)`, :math:`\mu_i = \sum p(i,j)\,i`,
:math:`\mu_j = \sum p(i,j)\,j`.

``SmallAreaEmphasis``, ``LargeAreaEmphasis``
    :math:`\sum P(i,j)/j^2 / N_z` and :math:`\sum P(i,j)\,j^2 / N_z`: small / large zones.
``GrayLevelNonUniformity``
    :math:`\sum_i p_g(i)^2 / N_z`: similarity of the zones' grey levels.
``GrayLevelNonUniformityNormalized``
    :math:`\sum_i p_g(i)^2 / N_z^2`.
``SizeZoneNonUniformity``
    :math:`\sum_j p_s(j)^2 / N_z`: similarity of the zone sizes.
``SizeZoneNonUniformityNormalized``
    :math:`\sum_j p_s(j)^2 / N_z^2`.
``ZonePercentage``
    :math:`N_z / N_p`: coarseness (1 when every zone is one pixel).
``GrayLevelVariance``
    :math:`\sum p(i,j)(i-\mu_i)^2`.
``ZoneVariance``
    :math:`\sum p(i,j)(j-\mu_j)^2`.
``ZoneEntropy``
    :math:`-\sum p(i,j)\log_2(p(i,j)+\epsilon)`: randomness of zone sizes and levels.
``LowGrayLevelZoneEmphasis``, ``HighGrayLevelZoneEmphasis``
    :math:`\sum P(i,j)/i^2 / N_z` and :math:`\sum P(i,j)\,i^2 / N_z`.
``SmallAreaLowGrayLevelEmphasis``, ``SmallAreaHighGrayLevelEmphasis``
    :math:`\sum P(i,j)/(i^2 j^2) / N_z` and :math:`\sum P(i,j)\,i^2/j^2 / N_z`.
``LargeAreaLowGrayLevelEmphasis``, ``LargeAreaHighGrayLevelEmphasis``
    :math:`\sum P(i,j)\,j^2/i^2 / N_z` and :math:`\sum P(i,j)\,i^2 j^2 / N_z`.

How: ``skimage.measure.label`` labels the regions of equal value of the whole grey-level image
in a single pass (0 = outside the ROI is background), so no per-grey-level loop is needed; zone
sizes come from ``numpy.bincount``. The matrix is kept as its non-zero cells
(:class:`~medspark.features.texture.Cells`): memory follows the number of zones, whatever the
number of grey levels or zone sizes, so GLSZM needs no memory budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from skimage.measure import label as label_regions

from medspark.features.texture import Cells, Plane

if TYPE_CHECKING:
    from medspark.features.context import Context

NAMES = ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
         "HighGrayLevelZoneEmphasis", "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis",
         "LargeAreaLowGrayLevelEmphasis", "LowGrayLevelZoneEmphasis", "SizeZoneNonUniformity",
         "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis",
         "SmallAreaHighGrayLevelEmphasis", "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy",
         "ZonePercentage", "ZoneVariance")

# Each feature: the statistic of Cells.statistics it is.
_STATISTIC = {
    "GrayLevelNonUniformity": "grey_nonuniformity",
    "GrayLevelNonUniformityNormalized": "grey_nonuniformity_normalized",
    "GrayLevelVariance": "grey_variance",
    "HighGrayLevelZoneEmphasis": "high_grey",
    "LargeAreaEmphasis": "large",
    "LargeAreaHighGrayLevelEmphasis": "large_high",
    "LargeAreaLowGrayLevelEmphasis": "large_low",
    "LowGrayLevelZoneEmphasis": "low_grey",
    "SizeZoneNonUniformity": "column_nonuniformity",
    "SizeZoneNonUniformityNormalized": "column_nonuniformity_normalized",
    "SmallAreaEmphasis": "small",
    "SmallAreaHighGrayLevelEmphasis": "small_high",
    "SmallAreaLowGrayLevelEmphasis": "small_low",
    "ZoneEntropy": "entropy",
    "ZonePercentage": "percentage",
    "ZoneVariance": "column_variance",
}
DENSE_LIMIT = 2 ** 22  # matrix cells up to which zones are counted with a dense bincount


def matrix(plane: Plane) -> Cells:
    """The size-zone matrix over the present grey levels, as non-zero cells; column ``k`` is
    zone size ``k + 1``."""
    zones = np.take(label_regions(plane.ranks, background=0, connectivity=2).ravel(),
                    plane.index)  # zone label of each ROI pixel
    size = np.bincount(zones)
    # Every pixel of a zone has the zone's rank, so the rank sum / size is exact.
    rank = (np.bincount(zones, weights=plane.roi_ranks) / np.maximum(size, 1))[1:]
    return Cells.count_items(rank.astype(np.intp) - 1, size[1:] - 1, 1, plane.n_levels,
                             DENSE_LIMIT)


def features(cells: Cells, plane: Plane) -> dict[str, float]:
    """All GLSZM features from the size-zone matrix's ``cells``."""
    stats = cells.statistics(plane.grey_levels)
    return {name: float(stats[_STATISTIC[name]][0]) for name in NAMES}


def compute(ctx: Context) -> dict[str, float]:
    """GLSZM features of the context's plane."""
    return features(matrix(ctx.plane), ctx.plane)
