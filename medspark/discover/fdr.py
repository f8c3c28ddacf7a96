"""Benjamini-Hochberg false discovery rate control."""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control


def bh_qvalues(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN where a p-value is missing.

    Missing p-values (an untestable feature) are left out of the family rather than counted
    as non-significant tests, so they neither help nor hurt the others.
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = false_discovery_control(np.clip(p[ok], 0.0, 1.0), method="bh")
    return q


def significant(q_values, level: float) -> np.ndarray:
    """q <= level (False where q is missing)."""
    q = np.asarray(q_values, dtype=float)
    return np.isfinite(q) & (q <= level)
