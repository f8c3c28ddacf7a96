"""Drift of tonight's feature distributions against previous nights, from binned counts.

Spark bins each feature once (edges from the reference's quantiles, counts of tonight's and of
the reference's rows per bin), so the driver only sees a few numbers per feature. From those:

- KS statistic: the largest gap between the two empirical CDFs, evaluated at the bin edges. It is
  a lower bound of the exact two-sample statistic (the exact one may peak inside a bin), so finer
  bins bring it closer; with decile bins a flagged feature is still a real shift.
- p value: scipy's asymptotic two-sided KS distribution (`scipy.stats.kstwo` with
  n = n1 n2 / (n1 + n2)), as `scipy.stats.ks_2samp(method="asymp")` computes it.
- q value: Benjamini-Hochberg over the night's features (`scipy.stats.false_discovery_control`).
- flagged: q <= `fdr` and KS >= `min_ks`; with tens of thousands of rows a tiny, harmless shift
  is significant, so an effect-size floor keeps the flag meaningful.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from medspark.report.model import FeatureDrift, Histogram


def binned_ks(tonight: Histogram, previous: Histogram) -> tuple[float, float]:
    """(KS statistic, asymptotic p value) of two histograms over the same edges."""
    if len(tonight.edges) != len(previous.edges) or not np.allclose(tonight.edges,
                                                                    previous.edges):
        raise ValueError("binned_ks needs both histograms over the same edges")
    a = np.asarray(tonight.counts, dtype=float)
    b = np.asarray(previous.counts, dtype=float)
    n, m = a.sum(), b.sum()
    if n == 0 or m == 0:
        raise ValueError("binned_ks needs rows on both sides")
    d = float(np.max(np.abs(np.cumsum(a) / n - np.cumsum(b) / m)))
    en = n * m / (n + m)
    p = float(stats.kstwo.sf(d, max(1, round(en))))
    return d, min(1.0, max(0.0, p))


def flag_drift(features: list[FeatureDrift], *, fdr: float = 0.05,
               min_ks: float = 0.1) -> list[FeatureDrift]:
    """Fill KS/p (from the histograms where missing), BH q values and the drift flag.

    Features without a reference or without histograms keep their values and are not flagged.
    Returns new objects; the inputs are unchanged.
    """
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must be in (0, 1), got {fdr}")
    filled: list[FeatureDrift] = []
    for f in features:
        ks, p = f.ks_statistic, f.p_value
        t, r = f.tonight.histogram, f.previous.histogram if f.previous else None
        if (ks is None or p is None) and t is not None and r is not None \
                and t.total > 0 and r.total > 0:
            ks, p = binned_ks(t, r)
        filled.append(f.model_copy(update={"ks_statistic": ks, "p_value": p}))
    tested = [i for i, f in enumerate(filled) if f.p_value is not None]
    q = (stats.false_discovery_control([filled[i].p_value for i in tested], method="bh")
         if tested else [])
    out = list(filled)
    for i, qi in zip(tested, q, strict=True):
        f = filled[i]
        qv = float(min(1.0, qi))
        out[i] = f.model_copy(update={
            "q_value": qv, "flagged": bool(qv <= fdr and (f.ks_statistic or 0.0) >= min_ks)})
    return out
