"""Pairs of strongly correlated features and groups of redundant ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform


@dataclass(frozen=True)
class CorrelatedPair:
    feature_a: str
    feature_b: str
    r: float


def strong_pairs(corr: np.ndarray, names: list[str], threshold: float) -> list[CorrelatedPair]:
    """Pairs (a before b) with |r| >= threshold, strongest first."""
    corr = np.asarray(corr, dtype=float)
    i, j = np.triu_indices(len(names), k=1)
    r = corr[i, j]
    keep = np.isfinite(r) & (np.abs(r) >= threshold)
    pairs = [CorrelatedPair(names[a], names[b], float(v))
             for a, b, v in zip(i[keep], j[keep], r[keep], strict=True)]
    return sorted(pairs, key=lambda p: -abs(p.r))


def redundancy_groups(corr: np.ndarray, names: list[str], threshold: float) -> list[int]:
    """A group number per feature: complete-linkage clustering on 1 - |r| cut at
    1 - threshold, so every pair inside a group has |r| >= threshold. Groups are numbered
    from 0 by their first feature; an undefined correlation counts as 0."""
    n = len(names)
    if n < 2:
        return [0] * n
    dist = 1 - np.abs(np.nan_to_num(np.asarray(corr, dtype=float), nan=0.0))
    dist = np.clip((dist + dist.T) / 2, 0, 1)
    np.fill_diagonal(dist, 0)
    labels = fcluster(linkage(squareform(dist, checks=False), "complete"),
                      t=1 - threshold + 1e-12, criterion="distance")
    renumber: dict[int, int] = {}
    return [renumber.setdefault(int(lab), len(renumber)) for lab in labels]


def representatives(groups: list[int], names: list[str], priority: list[float]) -> list[str]:
    """One feature per group: the one with the highest priority (e.g. |AUC - 0.5|), groups in
    order of their best priority."""
    best: dict[int, int] = {}
    for i, g in enumerate(groups):
        if g not in best or priority[i] > priority[best[g]]:
            best[g] = i
    order = sorted(best.values(), key=lambda i: -priority[i])
    return [names[i] for i in order]
