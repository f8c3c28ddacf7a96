r"""Grey Level Run Length Matrix features, pyradiomics 3.0.1 ``RadiomicsGLRLM`` (2D).

Definition: :math:`P(i,j)` counts the runs (maximal stretches of consecutive ROI pixels with one
grey level along a direction) of grey level :math:`i` and length :math:`j`; one matrix per
in-plane direction (4), summed with weights when ``weightingNorm`` is set. Every feature is
computed per direction and averaged. Notation: :math:`N_r = \sum P` the number of runs,
:math:`N_p = \sum_{i,j} j P(i,j)` the pixels, :math:`p(i,j) = P(i,j)/N_r`,
:math:`p_g(i) = \sum_j P(i,j)` and :math:`p_r(j) = \sum_i P(i,j)`,
:math:`\mu_i = \sum p(i,j)\,i`, :math:`\mu_j = \sum p(i,j)\,j`.

``ShortRunEmphasis``, ``LongRunEmphasis``
    :math:`\sum P(i,j)/j^2 / N_r` and :math:`\sum P(i,j)\,j^2 / N_r`: short / long runs.
``GrayLevelNonUniformity``
    :math:`\sum_i p_g(i)^2 / N_r`: similarity of the grey levels (lower is more alike).
``GrayLevelNonUniformityNormalized``
    :math:`\sum_i p_g(i)^2 / N_r^2`.
``RunLengthNonUniformity``
    :math:`\sum_j p_r(j)^2 / N_r`: similarity of the run lengths.
``RunLengthNonUniformityNormalized``
    :math:`\sum_j p_r(j)^2 / N_r^2`.
``RunPercentage``
    :math:`N_r / N_p`: coarseness (1 when every run is one pixel).
``GrayLevelVariance``
    :math:`\sum p(i,j)(i-\mu_i)^2`: spread of the runs' grey levels.
``RunVariance``
    :math:`\sum p(i,j)(j-\mu_j)^2`: spread of the run lengths.
``RunEntropy``
    :math:`-\sum p(i,j)\log_2(p(i,j)+\epsilon)`: randomness of lengths and levels.
``LowGrayLevelRunEmphasis``, ``HighGrayLevelRunEmphasis``
    :math:`\sum P(i,j)/i^2 / N_r` and :math:`\sum P(i,j)\,i^2 / N_r`.
``ShortRunLowGrayLevelEmphasis``, ``ShortRunHighGrayLevelEmphasis``
    :math:`\sum P(i,j)/(i^2 j^2) / N_r` and :math:`\sum P(i,j)\,i^2/j^2 / N_r`.
``LongRunLowGrayLevelEmphasis``, ``LongRunHighGrayLevelEmphasis``
    :math:`\sum P(i,j)\,j^2/i^2 / N_r` and :math:`\sum P(i,j)\,i^2 j^2 / N_r`.

How: for each direction the grey-level image (0 outside the ROI) is re-arranged (transposed, or
sheared for the diagonals) so that its lines become rows; runs are the maximal constant, non-zero
stretches of a row, found from start/end marks with ``numpy.flatnonzero``. As in pyradiomics, a
direction in which no line holds more than one ROI pixel is dropped, empty directions are removed
and features are averaged over directions. The matrices are kept as their non-zero cells
(:class:`~medspark.features.texture.Cells`): memory follows the number of runs, whatever the
number of grey levels or run lengths, so GLRLM needs no memory budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medspark.features.angles import angles as make_angles
from medspark.features.angles import weights
from medspark.features.settings import Settings
from medspark.features.texture import Cells, Plane, nanmean

if TYPE_CHECKING:
    from medspark.features.context import Context

NAMES = ("GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
         "HighGrayLevelRunEmphasis", "LongRunEmphasis", "LongRunHighGrayLevelEmphasis",
         "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis", "RunEntropy",
         "RunLengthNonUniformity", "RunLengthNonUniformityNormalized", "RunPercentage",
         "RunVariance", "ShortRunEmphasis", "ShortRunHighGrayLevelEmphasis",
         "ShortRunLowGrayLevelEmphasis")

# Each feature: the statistic of Cells.statistics it is.
_STATISTIC = {
    "GrayLevelNonUniformity": "grey_nonuniformity",
    "GrayLevelNonUniformityNormalized": "grey_nonuniformity_normalized",
    "GrayLevelVariance": "grey_variance",
    "HighGrayLevelRunEmphasis": "high_grey",
    "LongRunEmphasis": "large",
    "LongRunHighGrayLevelEmphasis": "large_high",
    "LongRunLowGrayLevelEmphasis": "large_low",
    "LowGrayLevelRunEmphasis": "low_grey",
    "RunEntropy": "entropy",
    "RunLengthNonUniformity": "column_nonuniformity",
    "RunLengthNonUniformityNormalized": "column_nonuniformity_normalized",
    "RunPercentage": "percentage",
    "RunVariance": "column_variance",
    "ShortRunEmphasis": "small",
    "ShortRunHighGrayLevelEmphasis": "small_high",
    "ShortRunLowGrayLevelEmphasis": "small_low",
}
DENSE_LIMIT = 2 ** 22  # matrix cells up to which runs are counted with a dense bincount


def _lines(levels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Re-arrange ``levels`` so every line along ``(dy, dx)`` is one row (0-padded)."""
    rows, cols = levels.shape
    if dy == 0:  # horizontal: lines are rows
        return levels
    if dx == 0:  # vertical: lines are columns
        return levels.T
    # Diagonals: zero-pad each row by rows - 1 and read with a row stride one longer (c - r
    # constant) or one shorter (c + r constant); positions off the image land in the padding.
    width = cols + rows - 1
    padded = np.zeros((rows + 1, width), dtype=levels.dtype)
    if dx > 0:
        padded[:rows, rows - 1:] = levels
        step = width + 1
    else:
        padded[:rows, :cols] = levels
        step = width - 1
    item = padded.itemsize
    view = np.lib.stride_tricks.as_strided(padded, shape=(rows + cols - 1, rows),
                                           strides=(item, step * item), writeable=False)
    return np.ascontiguousarray(view)


def _runs(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Rank and length - 1 of every run along the rows of ``lines``, and whether any row holds
    more than one ROI pixel. A run starts (ends) at an ROI pixel whose left (right) neighbour
    differs; starts and ends pair up in row-major order."""
    lines = np.ascontiguousarray(lines)
    differs = lines[:, 1:] != lines[:, :-1]
    inside = lines != 0
    start = inside.copy()
    start[:, 1:] &= differs
    inside[:, :-1] &= differs  # now: run ends
    first = np.flatnonzero(start)
    extra = np.flatnonzero(inside) - first  # run length - 1
    # A row holds 2+ ROI pixels iff some run is longer than 1 or two runs share a row.
    multi = bool(extra.max(initial=0) > 0
                 or np.any(np.diff(first // lines.shape[1]) == 0))
    return np.take(lines.ravel(), first), extra, multi


def matrix(plane: Plane, settings: Settings, spacing: tuple[float, float]) -> Cells:
    """Run-length matrices (one per direction, or their weighted sum) over the present grey
    levels, as non-zero cells; column ``k`` is run length ``k + 1``."""
    offsets = make_angles(plane.shape, (1,), bidirectional=False)
    parts, angles = [], []
    for a, (dy, dx) in enumerate(offsets):
        rank, extra, multi = _runs(_lines(plane.ranks, int(dy), int(dx)))
        if multi:  # else pyradiomics zeroes the angle's length-1 runs, i.e. all of them
            row = rank.astype(np.intp)
            row -= 1
            parts.append(Cells.count_items(row, extra, 1, plane.n_levels, DENSE_LIMIT))
            angles.append(a)
    cells = Cells.stack(parts, plane.n_levels)
    if settings.weightingNorm is not None:
        w = weights(offsets, spacing, settings.weightingNorm, exponential=False)
        cells = cells.weighted_sum(w[np.asarray(angles, dtype=np.intp)])
    return cells


def features(cells: Cells, plane: Plane) -> dict[str, float]:
    """All GLRLM features from the run-length matrices' ``cells``: per direction, then averaged
    over the directions that hold runs (all NaN when none does)."""
    stats = cells.statistics(plane.grey_levels)
    keep = stats["total"] != 0 if cells.n_groups > 1 else slice(None)
    return {name: float(nanmean(stats[_STATISTIC[name]][keep])) for name in NAMES}


def compute(ctx: Context) -> dict[str, float]:
    """GLRLM features of the context's plane."""
    return features(matrix(ctx.plane, ctx.settings, ctx.spacing), ctx.plane)
