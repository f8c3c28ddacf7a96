"""First-order (intensity) features, pyradiomics 3.0.1 ``RadiomicsFirstOrder``.

Works on a 1-D array of ROI intensities, so the same code serves one plane or a pooled stack of
planes (see :func:`compute`). Differences from IBSI, inherited from pyradiomics on purpose:

* ``Kurtosis`` is the plain fourth standardised moment: IBSI's excess kurtosis + 3.
* ``Entropy``/``Uniformity`` use pyradiomics' 0-aligned bins (``binWidth``), not IBSI's
  minimum-aligned ones; ``Energy``/``RootMeanSquared``/``TotalEnergy`` add ``voxelArrayShift``.
* ``TotalEnergy`` is ``Energy`` times the pixel area (a plane has no slice thickness here).
* A flat ROI gives ``Skewness``/``Kurtosis`` computed with the 2nd moment replaced by 1 (i.e. 0
  when the ROI is exactly flat), as pyradiomics does.

The deprecated ``StandardDeviation`` is not produced (pyradiomics does not enable it).
Percentiles and the median follow ``numpy.percentile`` (linear) and ``numpy.median`` exactly,
but the order statistics are selected inside the few grey-level bins that hold them.
"""

from __future__ import annotations

import numpy as np

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


def compute(values: np.ndarray, levels: np.ndarray, pixel_area: float = 1.0,
            voxel_array_shift: float = 0.0) -> dict[str, float]:
    """First-order features of ROI intensities ``values`` and their discretised ``levels``.

    ``values`` must be finite and non-empty; ``levels`` are the grey levels from
    :func:`medspark.features.discretize.discretize` (monotone in ``values``).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    lv = np.asarray(levels, dtype=np.intp).ravel()
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
