"""Monotonic trend of a short series (one value per period): Theil-Sen slope and the
Mann-Kendall test, both robust to outlying periods and to the series' distribution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class TrendResult:
    """Slope per period (Theil-Sen, with its 95% interval) and Mann-Kendall's tau and p."""

    n_periods: int
    slope: float
    slope_low: float
    slope_high: float
    intercept: float
    tau: float
    p_value: float


def trend_test(t, y) -> TrendResult:
    """Theil-Sen slope of `y` over `t` (`scipy.stats.theilslopes`) and the Mann-Kendall test.

    The Mann-Kendall statistic S is Kendall's tau between time and value, so its p-value is
    `scipy.stats.kendalltau`'s (exact for short series without ties, normal with the tie
    correction otherwise). Missing values are dropped first.
    """
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    nan = float("nan")
    if len(t) < 3 or np.ptp(t) == 0:
        return TrendResult(len(t), nan, nan, nan, nan, nan, nan)
    slope, intercept, low, high = stats.theilslopes(y, t)
    if np.ptp(y) == 0:
        return TrendResult(len(t), 0.0, 0.0, 0.0, float(intercept), 0.0, 1.0)
    tau = stats.kendalltau(t, y)
    return TrendResult(len(t), float(slope), float(low), float(high), float(intercept),
                       float(tau.statistic), float(tau.pvalue))
