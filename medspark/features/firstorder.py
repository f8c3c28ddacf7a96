r"""First-order (intensity) features, pyradiomics 3.0.1 ``RadiomicsFirstOrder``.

Notation: :math:`X` the :math:`N_p` intensities of the ROI, :math:`c` the ``voxelArrayShift``
setting, :math:`A` the pixel area, :math:`p(i)` the fraction of the ROI in grey level :math:`i`
(pyradiomics' discretisation, :mod:`medspark.features.discretize`), :math:`\bar X` the mean and
:math:`P_{k}` the k-th percentile (``numpy.percentile``, linear).

``10Percentile``, ``90Percentile``
    :math:`P_{10}`, :math:`P_{90}`.
``Energy``
    :math:`\sum_k (X_k + c)^2`: magnitude of the intensities.
``Entropy``
    :math:`-\sum_i p(i) \log_2(p(i) + \epsilon)`: randomness of the grey levels.
``InterquartileRange``
    :math:`P_{75} - P_{25}`.
``Kurtosis``
    :math:`\mu_4 / \mu_2^2` with :math:`\mu_m = \frac{1}{N_p}\sum_k (X_k - \bar X)^m`:
    peakedness (pyradiomics' value is IBSI's excess kurtosis + 3).
``Maximum``, ``Minimum``, ``Median``, ``Mean``
    :math:`\max X`, :math:`\min X`, the median and :math:`\bar X = \frac{1}{N_p}\sum_k X_k`.
``MeanAbsoluteDeviation``
    :math:`\frac{1}{N_p}\sum_k |X_k - \bar X|`: spread about the mean.
``Range``
    :math:`\max X - \min X`.
``RobustMeanAbsoluteDeviation``
    the mean absolute deviation of the intensities within :math:`[P_{10}, P_{90}]` from their
    own mean: spread without the tails.
``RootMeanSquared``
    :math:`\sqrt{\frac{1}{N_p}\sum_k (X_k + c)^2}`.
``Skewness``
    :math:`\mu_3 / \mu_2^{3/2}`: asymmetry about the mean.
``TotalEnergy``
    :math:`A \sum_k (X_k + c)^2`: energy scaled by the pixel area (a plane has no slice
    thickness here).
``Uniformity``
    :math:`\sum_i p(i)^2`: homogeneity of the grey levels.
``Variance``
    :math:`\mu_2`: spread about the mean.

Works on a 1-D array of ROI intensities (:func:`statistics`), so the same code serves one plane
or a pooled stack of planes. Differences from IBSI, inherited from pyradiomics on purpose:
``Kurtosis`` as above; ``Entropy``/``Uniformity`` use pyradiomics' 0-aligned bins
(``binWidth``), not IBSI's minimum-aligned ones; ``Energy``/``RootMeanSquared``/``TotalEnergy``
add ``voxelArrayShift``; a flat ROI gives ``Skewness``/``Kurtosis`` computed with the 2nd moment
replaced by 1 (i.e. 0 when the ROI is exactly flat), as pyradiomics does.

The deprecated ``StandardDeviation`` is not produced (pyradiomics does not enable it).
Percentiles and the median follow ``numpy.percentile`` (linear) and ``numpy.median`` exactly,
but the order statistics are selected inside the few grey-level bins that hold them. When the
largest grey level is huge (a 32-bit image), the levels are ranked over those present first, so
no array is sized by it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medspark.features.texture import DENSE_LEVELS, rank_levels

if TYPE_CHECKING:
    from medspark.features.context import Context

NAMES = ("10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis",
         "Maximum", "MeanAbsoluteDeviation", "Mean", "Median", "Minimum", "Range",
         "RobustMeanAbsoluteDeviation", "RootMeanSquared", "Skewness", "TotalEnergy",
         "Uniformity", "Variance")

EPS = np.spacing(1)
QUANTILES = np.array([10, 25, 75, 90]) / 100


def _order_statistics(x: np.ndarray, levels: np.ndarray, counts: np.ndarray,
                      ranks: np.ndarray) -> np.ndarray:
    """``sorted(x)[ranks]``, partitioning only the bins of the monotone ``levels`` that hold
    those ranks (``counts`` = ``bincount(levels)``) instead of all of ``x``."""
    cum = np.cumsum(counts)
    bins = np.searchsorted(cum, ranks, side="right")
    need = np.zeros(len(counts), dtype=bool)
    need[bins] = True
    sub = np.take(x, np.flatnonzero(np.take(need, levels)))
    kept = np.where(need, counts, 0)
    pos = ranks - (cum - counts)[bins] + (np.cumsum(kept) - kept)[bins]
    return np.partition(sub, np.unique(pos))[pos]


def _percentiles_and_median(x: np.ndarray, levels: np.ndarray, counts: np.ndarray
                            ) -> tuple[np.ndarray, float]:
    """``numpy.percentile(x, [10, 25, 75, 90])`` and ``numpy.median(x)``, bit for bit."""
    n = x.size
    virtual = (n - 1) * QUANTILES
    prev = np.floor(virtual).astype(np.intp)
    nxt = prev + 1
    top = virtual >= n - 1
    prev[top] = nxt[top] = n - 1
    gamma = virtual - np.floor(virtual)
    half = n // 2
    mid = [half] if n % 2 else [half - 1, half]
    ranks = np.concatenate([prev, nxt, mid])
    stats = _order_statistics(x, levels, counts, ranks)
    a, b = stats[:4], stats[4:8]
    diff = b - a
    pct = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)  # numpy's _lerp
    median = stats[8] if n % 2 else (stats[8] + stats[9]) / 2.0
    return pct, float(median)


def statistics(values: np.ndarray, levels: np.ndarray, pixel_area: float = 1.0,
               voxel_array_shift: float = 0.0) -> dict[str, float]:
    """First-order features of ROI intensities ``values`` and their discretised ``levels``.

    ``values`` must be finite and non-empty; ``levels`` are grey levels monotone in ``values``
    (from :func:`medspark.features.discretize.discretize`, or their ranks).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    lv = np.asarray(levels, dtype=np.intp).ravel()
    if lv.max() > max(DENSE_LEVELS, 4 * lv.size):  # counts per level would be huge: use ranks
        lv = rank_levels(lv)[1]
    counts = np.bincount(lv)
    p = counts[counts > 0] / float(x.size)
    shifted = x + voxel_array_shift
    energy = float(np.sum(shifted * shifted))

    mean = np.mean(x)
    dev = x - mean
    dev2 = dev * dev  # products, not ** 3 / ** 4: numpy's generic pow is ~100x slower
    m2 = np.mean(dev2)
    m3 = np.mean(dev2 * dev)
    m4 = np.mean(dev2 * dev2)
    m2_safe = m2 if m2 != 0 else 1.0  # flat region: pyradiomics divides by 1

    (p10, p25, p75, p90), median = _percentiles_and_median(x, lv, counts)
    robust = (x >= p10) & (x <= p90)
    n_robust = int(np.count_nonzero(robust))
    if n_robust:  # pyradiomics: nanmean over the array with NaN outside [p10, p90]
        robust_mean = np.sum(np.where(robust, x, 0.0)) / n_robust
        rmad = float(np.sum(np.where(robust, np.abs(x - robust_mean), 0.0)) / n_robust)
    else:  # e.g. a 2-pixel ROI: nothing lies within [p10, p90]
        rmad = np.nan
    lo, hi = x.min(), x.max()
    return {
        "10Percentile": float(p10),
        "90Percentile": float(p90),
        "Energy": energy,
        "Entropy": float(-np.sum(p * np.log2(p + EPS))),
        "InterquartileRange": float(p75 - p25),
        "Kurtosis": float(m4 / m2_safe ** 2.0),
        "Maximum": float(hi),
        "MeanAbsoluteDeviation": float(np.mean(np.abs(dev))),
        "Mean": float(mean),
        "Median": median,
        "Minimum": float(lo),
        "Range": float(hi - lo),
        "RobustMeanAbsoluteDeviation": rmad,
        "RootMeanSquared": float(np.sqrt(energy / x.size)),
        "Skewness": float(m3 / m2_safe ** 1.5),
        "TotalEnergy": energy * pixel_area,
        "Uniformity": float(np.sum(p ** 2)),
        "Variance": float(np.sqrt(m2) ** 2),  # pyradiomics squares nanstd
    }


def compute(ctx: Context) -> dict[str, float]:
    """First-order features of the context's ROI."""
    return statistics(ctx.values, ctx.levels, ctx.pixel_area, ctx.settings.voxelArrayShift)
