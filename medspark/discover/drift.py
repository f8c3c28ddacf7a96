"""Distribution shift of a batch against a reference, from binned counts (never the rows).

The Spark layer counts both samples over one fine grid of pooled quantile edges; the KS
statistic is the largest CDF gap at those edges (exact when every distinct value has its own
bin, otherwise a lower bound off by at most one bin's share), and the PSI merges the fine bins
into about `n_bins` bins of equal reference share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

PSI_EPS = 1e-4  # share given to an empty bin, so an unseen bin adds a large, finite PSI


@dataclass(frozen=True)
class DriftResult:
    """PSI, KS statistic and its p-value of one feature (or category mix)."""

    psi: float
    ks_statistic: float
    p_value: float


def psi(ref_counts, new_counts) -> float:
    """Population stability index sum((new - ref) * ln(new / ref)) over bin shares."""
    ref, new = np.asarray(ref_counts, dtype=float), np.asarray(new_counts, dtype=float)
    if ref.sum() <= 0 or new.sum() <= 0:
        return float("nan")
    p = np.clip(ref / ref.sum(), PSI_EPS, None)
    q = np.clip(new / new.sum(), PSI_EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def merge_bins(ref_counts, n_bins: int) -> np.ndarray:
    """Group index of each fine bin such that groups hold about 1/n_bins of the reference."""
    ref = np.asarray(ref_counts, dtype=float)
    if ref.sum() <= 0:
        return np.zeros(len(ref), dtype=int)
    before = (np.cumsum(ref) - ref) / ref.sum()  # reference share below each fine bin
    return np.minimum((before * n_bins + 1e-9).astype(int), n_bins - 1)


def ks_binned(ref_counts, new_counts) -> tuple[float, float]:
    """Two-sample KS statistic from counts over shared ordered bins, and its two-sided p-value
    (`scipy.stats.kstwo` at the effective size n*m/(n+m), as `ks_2samp`'s asymptotic mode)."""
    ref, new = np.asarray(ref_counts, dtype=float), np.asarray(new_counts, dtype=float)
    n, m = ref.sum(), new.sum()
    if n <= 0 or m <= 0:
        return float("nan"), float("nan")
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(new) / m)))
    en = n * m / (n + m)
    return d, float(np.clip(stats.kstwo.sf(d, max(1, round(en))), 0.0, 1.0))


def feature_drift(ref_counts, new_counts, n_bins: int) -> DriftResult:
    """PSI over ~`n_bins` reference-quantile bins and KS over the fine bins."""
    ref, new = np.asarray(ref_counts, dtype=float), np.asarray(new_counts, dtype=float)
    groups = merge_bins(ref, n_bins)
    size = groups.max() + 1 if len(groups) else 0
    coarse_ref = np.bincount(groups, weights=ref, minlength=size)
    coarse_new = np.bincount(groups, weights=new, minlength=size)
    d, p = ks_binned(ref, new)
    return DriftResult(psi(coarse_ref, coarse_new), d, p)


@dataclass(frozen=True)
class CategoryDrift:
    """Drift of a categorical column's mix: PSI over its values, chi-square p-value and the
    values the batch has but the reference never had."""

    psi: float
    p_value: float
    new_values: list[str]


def category_drift(values: list[str], ref_counts, new_counts) -> CategoryDrift:
    """PSI and chi-square test (`scipy.stats.chi2_contingency`) of a 2 x values table."""
    ref, new = np.asarray(ref_counts, dtype=float), np.asarray(new_counts, dtype=float)
    unseen = [v for v, r, c in zip(values, ref, new, strict=True) if r == 0 and c > 0]
    keep = (ref + new) > 0
    table = np.vstack([ref[keep], new[keep]])
    if ref.sum() == 0 or new.sum() == 0:
        return CategoryDrift(float("nan"), float("nan"), unseen)
    if table.shape[1] < 2:  # one value on both sides: nothing moved
        return CategoryDrift(0.0, 1.0, unseen)
    p = float(stats.chi2_contingency(table, correction=False).pvalue)
    return CategoryDrift(psi(ref, new), p, unseen)
