"""Enrichment of a label (or any category) in a subset: clusters, rule antecedents."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from medspark.discover.ranks import GroupMoments, combine, welch_t


@dataclass(frozen=True)
class Enrichment:
    """A subset's positive rate (or label mean), its ratio to the overall value and the
    two-sided p-value of the difference from the rows outside the subset."""

    rate: float
    lift: float
    p_value: float


def class_enrichment(table, positive: int | None) -> list[Enrichment]:
    """Per row of a subsets x classes count table: the subset against all other rows.

    Binary (`positive` = column of the positive class): Fisher's exact test of the 2 x 2 table
    (`scipy.stats.fisher_exact`), `rate` the subset's positive share. More classes: chi-square
    test of the 2 x classes table (`scipy.stats.chi2_contingency`), `rate` NaN.
    """
    table = np.asarray(table, dtype=float)
    total = table.sum(axis=0)
    overall = total[positive] / total.sum() if positive is not None and total.sum() else np.nan
    out = []
    for row in table:
        rest = total - row
        n = row.sum()
        if positive is not None and table.shape[1] == 2:
            neg = 1 - positive
            grid = np.array([[row[positive], row[neg]], [rest[positive], rest[neg]]])
            p = float(stats.fisher_exact(grid.astype(np.int64)).pvalue)
            rate = row[positive] / n if n else np.nan
            out.append(Enrichment(float(rate), float(rate / overall) if overall else np.nan, p))
            continue
        grid = np.vstack([row, rest])
        grid = grid[:, grid.sum(axis=0) > 0]
        p = (float(stats.chi2_contingency(grid, correction=False).pvalue)
             if grid.shape[1] > 1 and n and rest.sum() else np.nan)
        out.append(Enrichment(np.nan, np.nan, p))
    return out


def mean_enrichment(groups: list[GroupMoments]) -> list[Enrichment]:
    """A numeric label per subset: the subset's mean, its ratio to the overall mean and
    Welch's t-test against the other subsets pooled."""
    overall = combine(groups)
    out = []
    for i, g in enumerate(groups):
        rest = combine([h for j, h in enumerate(groups) if j != i])
        p = welch_t(g, rest).p_value
        lift = g.mean / overall.mean if overall.mean else np.nan
        out.append(Enrichment(float(g.mean), float(lift), p))
    return out


def rule_p_value(n_rule: float, n_antecedent: float, base_rate: float) -> float:
    """One-sided binomial test (`scipy.stats.binomtest`): does the consequent occur among the
    antecedent's rows more often than its overall rate?"""
    n, k = round(n_antecedent), round(n_rule)
    if n < 1 or not 0 < base_rate < 1:
        return float("nan")
    return float(stats.binomtest(min(k, n), n, base_rate, alternative="greater").pvalue)
