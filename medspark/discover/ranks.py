"""Two-group and k-group tests from aggregated statistics, so Spark never sorts the rows.

Rank tests take per-class counts over ordered bins (quantile bins of a feature): every bin is
one tie group, so the statistics are exact when each bin holds one distinct value (a feature
with fewer distinct values than bins) and otherwise treat values within a bin as ties, which
moves the AUC by at most the share of pairs inside one bin. Moment tests take each class's
count, mean and variance, which Spark computes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class GroupMoments:
    """Count, mean and sample variance of one group."""

    n: float
    mean: float
    var: float


@dataclass(frozen=True)
class TestResult:
    """One feature against the label."""

    __test__ = False  # not a pytest class

    statistic: float
    p_value: float
    auc: float = float("nan")
    cliffs_delta: float = float("nan")
    cohen_d: float = float("nan")


def midranks(totals: np.ndarray) -> np.ndarray:
    """Mid-rank (1-based) of each bin given the bins' row counts in value order."""
    totals = np.asarray(totals, dtype=float)
    before = np.cumsum(totals) - totals
    return before + (totals + 1.0) / 2.0


def _tie_term(totals: np.ndarray) -> float:
    t = np.asarray(totals, dtype=float)
    return float(np.sum(t**3 - t))


def mann_whitney_binned(pos: np.ndarray, neg: np.ndarray) -> TestResult:
    """Mann-Whitney U from per-bin counts of the positive and negative class.

    `auc` is P(X_pos > X_neg) + P(tie)/2 (so 0.5 is no effect, below 0.5 lower in positives),
    `cliffs_delta` = 2 auc - 1; the two-sided p-value is the tie-corrected normal approximation
    with continuity correction, as `scipy.stats.mannwhitneyu(method="asymptotic")`.
    """
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    n1, n0 = pos.sum(), neg.sum()
    if n1 < 1 or n0 < 1:
        return TestResult(float("nan"), float("nan"))
    totals = pos + neg
    n = n1 + n0
    u1 = float(np.sum(pos * midranks(totals)) - n1 * (n1 + 1) / 2)
    auc = u1 / (n1 * n0)
    u = max(u1, n1 * n0 - u1)
    var = n1 * n0 / 12.0 * ((n + 1) - _tie_term(totals) / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        p = 1.0
    else:
        z = (u - n1 * n0 / 2.0 - 0.5) / np.sqrt(var)
        p = float(min(1.0, 2 * stats.norm.sf(z)))
    return TestResult(u1, p, auc=auc, cliffs_delta=2 * auc - 1)


def kruskal_binned(counts: np.ndarray) -> TestResult:
    """Kruskal-Wallis H from a classes x bins count matrix (tie-corrected, as
    `scipy.stats.kruskal`); `statistic` is H."""
    counts = np.asarray(counts, dtype=float)
    counts = counts[counts.sum(axis=1) > 0]
    if len(counts) < 2:
        return TestResult(float("nan"), float("nan"))
    totals = counts.sum(axis=0)
    n = totals.sum()
    ranks = midranks(totals)
    sizes = counts.sum(axis=1)
    rank_sums = counts @ ranks
    h = 12.0 / (n * (n + 1)) * np.sum(rank_sums**2 / sizes) - 3 * (n + 1)
    correction = 1 - _tie_term(totals) / (n**3 - n)
    if correction <= 0:
        return TestResult(float("nan"), 1.0)
    h /= correction
    return TestResult(float(h), float(stats.chi2.sf(h, len(counts) - 1)))


def cohen_d(pos: GroupMoments, neg: GroupMoments) -> float:
    """(mean_pos - mean_neg) / pooled SD."""
    df = pos.n + neg.n - 2
    if df <= 0:
        return float("nan")
    pooled = ((pos.n - 1) * pos.var + (neg.n - 1) * neg.var) / df
    return float((pos.mean - neg.mean) / np.sqrt(pooled)) if pooled > 0 else float("nan")


def welch_t(pos: GroupMoments, neg: GroupMoments) -> TestResult:
    """Welch's t-test from moments (`scipy.stats.ttest_ind_from_stats`)."""
    if pos.n < 2 or neg.n < 2:
        return TestResult(float("nan"), float("nan"))
    res = stats.ttest_ind_from_stats(pos.mean, np.sqrt(pos.var), pos.n, neg.mean,
                                     np.sqrt(neg.var), neg.n, equal_var=False)
    return TestResult(float(res.statistic), float(res.pvalue))


def anova(groups: list[GroupMoments]) -> TestResult:
    """One-way ANOVA F-test from the groups' moments (as `scipy.stats.f_oneway`)."""
    groups = [g for g in groups if g.n > 0]
    k, n = len(groups), sum(g.n for g in groups)
    if k < 2 or n <= k:
        return TestResult(float("nan"), float("nan"))
    grand = sum(g.n * g.mean for g in groups) / n
    between = sum(g.n * (g.mean - grand) ** 2 for g in groups) / (k - 1)
    within = sum((g.n - 1) * g.var for g in groups) / (n - k)
    if within <= 0:
        return TestResult(float("nan"), float("nan"))
    f = between / within
    return TestResult(float(f), float(stats.f.sf(f, k - 1, n - k)))


def combine(groups: list[GroupMoments]) -> GroupMoments:
    """The moments of the union of groups (parallel variance formula)."""
    groups = [g for g in groups if g.n > 0]
    n = sum(g.n for g in groups)
    if n == 0:
        return GroupMoments(0.0, float("nan"), float("nan"))
    mean = sum(g.n * g.mean for g in groups) / n
    ss = sum((g.n - 1) * (g.var if g.n > 1 else 0.0) + g.n * (g.mean - mean) ** 2
             for g in groups)
    return GroupMoments(n, mean, ss / (n - 1) if n > 1 else float("nan"))


def spearman_p(rho: float, n: float) -> float:
    """Two-sided p-value of a Spearman correlation (t approximation, as `scipy.stats.
    spearmanr`)."""
    if not np.isfinite(rho) or n < 3:
        return float("nan")
    if abs(rho) >= 1:
        return 0.0
    t = rho * np.sqrt((n - 2) / (1 - rho**2))
    return float(2 * stats.t.sf(abs(t), n - 2))
