r"""Grey Level Dependence Matrix features, pyradiomics 3.0.1 ``RadiomicsGLDM`` (2D).

Definition: a neighbour (every in-plane offset at the ``distances``, both directions) of a ROI
pixel is dependent when it lies in the ROI and its grey level differs by at most ``gldm_a``;
:math:`P(i,j)` counts the ROI pixels of grey level :math:`i` with :math:`j - 1` dependent
neighbours (:math:`j \ge 1`, the pixel itself included). Notation: :math:`N_z = \sum P` (the ROI
pixels), :math:`p(i,j) = P(i,j)/N_z`, :math:`p_g(i) = \sum_j P(i,j)`,
:math:`p_d(j) = \sum_i P(i,j)`, :math:`\mu_i = \sum p(i,j)\,i`, :math:`\mu_j = \sum p(i,j)\,j`.

``SmallDependenceEmphasis``, ``LargeDependenceEmphasis``
    :math:`\sum P(i,j)/j^2 / N_z` and :math:`\sum P(i,j)\,j^2 / N_z`: small dependence means
    a heterogeneous texture, large a homogeneous one.
``GrayLevelNonUniformity``
    :math:`\sum_i p_g(i)^2 / N_z`: similarity of the grey levels.
``DependenceNonUniformity``
    :math:`\sum_j p_d(j)^2 / N_z`: similarity of the dependences.
``DependenceNonUniformityNormalized``
    :math:`\sum_j p_d(j)^2 / N_z^2`.
``GrayLevelVariance``
    :math:`\sum p(i,j)(i-\mu_i)^2`.
``DependenceVariance``
    :math:`\sum p(i,j)(j-\mu_j)^2`.
``DependenceEntropy``
    :math:`-\sum p(i,j)\log_2(p(i,j)+\epsilon)`.
``LowGrayLevelEmphasis``, ``HighGrayLevelEmphasis``
    :math:`\sum P(i,j)/i^2 / N_z` and :math:`\sum P(i,j)\,i^2 / N_z`.
``SmallDependenceLowGrayLevelEmphasis``, ``SmallDependenceHighGrayLevelEmphasis``
    :math:`\sum P(i,j)/(i^2 j^2) / N_z` and :math:`\sum P(i,j)\,i^2/j^2 / N_z`.
``LargeDependenceLowGrayLevelEmphasis``, ``LargeDependenceHighGrayLevelEmphasis``
    :math:`\sum P(i,j)\,j^2/i^2 / N_z` and :math:`\sum P(i,j)\,i^2 j^2 / N_z`.

(pyradiomics' ``GrayLevelNonUniformityNormalized`` is not produced: it equals first-order
``Uniformity``, and pyradiomics does not enable it.)

How: dependences are counted with shifted array views, one comparison per pair of pixels
credited to both (the relation is symmetric), and binned over the grey levels present; the
matrix is kept as its non-zero cells (:class:`~medspark.features.texture.Cells`), so its memory
follows the pixel count whatever the number of grey levels, and GLDM needs no memory budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medspark.features.angles import angles as make_angles
from medspark.features.angles import shifted_pairs
from medspark.features.settings import Settings
from medspark.features.texture import Cells, Plane

if TYPE_CHECKING:
    from medspark.features.context import Context

NAMES = ("DependenceEntropy", "DependenceNonUniformity", "DependenceNonUniformityNormalized",
         "DependenceVariance", "GrayLevelNonUniformity", "GrayLevelVariance",
         "HighGrayLevelEmphasis", "LargeDependenceEmphasis",
         "LargeDependenceHighGrayLevelEmphasis", "LargeDependenceLowGrayLevelEmphasis",
         "LowGrayLevelEmphasis", "SmallDependenceEmphasis",
         "SmallDependenceHighGrayLevelEmphasis", "SmallDependenceLowGrayLevelEmphasis")

# Each feature: the statistic of Cells.statistics it is.
_STATISTIC = {
    "DependenceEntropy": "entropy",
    "DependenceNonUniformity": "column_nonuniformity",
    "DependenceNonUniformityNormalized": "column_nonuniformity_normalized",
    "DependenceVariance": "column_variance",
    "GrayLevelNonUniformity": "grey_nonuniformity",
    "GrayLevelVariance": "grey_variance",
    "HighGrayLevelEmphasis": "high_grey",
    "LargeDependenceEmphasis": "large",
    "LargeDependenceHighGrayLevelEmphasis": "large_high",
    "LargeDependenceLowGrayLevelEmphasis": "large_low",
    "LowGrayLevelEmphasis": "low_grey",
    "SmallDependenceEmphasis": "small",
    "SmallDependenceHighGrayLevelEmphasis": "small_high",
    "SmallDependenceLowGrayLevelEmphasis": "small_low",
}
DENSE_LIMIT = 2 ** 22  # matrix cells up to which pixels are counted with a dense bincount


def matrix(plane: Plane, settings: Settings) -> Cells | None:
    """The dependence matrix over the present grey levels, as non-zero cells (column ``k`` is
    ``k`` dependent neighbours, ``j = k + 1``); ``None`` if no offset fits."""
    offsets = make_angles(plane.shape, settings.distances, bidirectional=True)
    if len(offsets) == 0:
        return None
    # Dependence is symmetric, so each uni-directional offset is compared once and credited
    # to both pixels of the pair (only ROI pixels' counts are read back).
    levels = plane.levels
    dep = np.zeros(plane.shape, dtype=np.uint8 if len(offsets) < 255 else np.int32)
    alpha = settings.gldm_a
    for dy, dx in offsets[: len(offsets) // 2]:
        centre, neighbour = shifted_pairs(plane.shape, int(dy), int(dx))
        a, b = levels[centre], levels[neighbour]
        # alpha 0: equal levels (pairs of two outside pixels are never read back)
        dependent = (a == b) if alpha == 0 else (a > 0) & (b > 0) & (np.abs(a - b) <= alpha)
        dep[centre] += dependent
        dep[neighbour] += dependent
    column = np.take(dep.ravel(), plane.index).astype(np.intp)
    return Cells.count_items(plane.roi_ranks - 1, column, 1, plane.n_levels, DENSE_LIMIT)


def features(cells: Cells, plane: Plane) -> dict[str, float]:
    """All GLDM features from the dependence matrix's ``cells``."""
    stats = cells.statistics(plane.grey_levels)
    return {name: float(stats[_STATISTIC[name]][0]) for name in NAMES}


def compute(ctx: Context) -> dict[str, float]:
    """GLDM features of the context's plane; all NaN when no offset fits (pyradiomics fails
    there)."""
    cells = matrix(ctx.plane, ctx.settings)
    if cells is None:
        return dict.fromkeys(NAMES, np.nan)
    return features(cells, ctx.plane)
