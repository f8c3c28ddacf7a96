"""Cluster statistics from aggregates: profiles, silhouettes, stability, choice of k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medspark.discover.ranks import GroupMoments, combine


@dataclass(frozen=True)
class KScore:
    """One candidate k: mean silhouette over the seeds' fits and their agreement."""

    k: int
    silhouette: float
    stability: float


def choose_k(scores: list[KScore], min_stability: float = 0.0) -> KScore:
    """The k with the highest silhouette among those whose fits agree (adjusted Rand across
    seeds) at least `min_stability`; all k when none does."""
    stable = [s for s in scores if not s.stability < min_stability] or scores
    return max(stable, key=lambda s: (np.nan_to_num(s.silhouette, nan=-2.0), -s.k))


def standardized_differences(moments: list[list[GroupMoments]]) -> np.ndarray:
    """clusters x features matrix of (mean in cluster - mean of the other rows) / pooled SD.

    `moments[c][j]` are feature j's moments in cluster c (null values left out).
    """
    k = len(moments)
    p = len(moments[0]) if k else 0
    out = np.full((k, p), np.nan)
    for j in range(p):
        col = [moments[c][j] for c in range(k)]
        for c in range(k):
            inside, rest = col[c], combine([m for i, m in enumerate(col) if i != c])
            df = inside.n + rest.n - 2
            if inside.n < 1 or rest.n < 1 or df <= 0:
                continue
            var_in = inside.var if inside.n > 1 else 0.0
            pooled = ((inside.n - 1) * var_in + (rest.n - 1) * rest.var) / df
            if pooled > 0:
                out[c, j] = (inside.mean - rest.mean) / np.sqrt(pooled)
    return out


def top_features(row: np.ndarray, names: list[str], n: int) -> list[tuple[str, float]]:
    """The `n` features with the largest |standardised difference|, signed values."""
    order = [i for i in np.argsort(-np.abs(np.nan_to_num(row, nan=0.0))) if np.isfinite(row[i])]
    return [(names[i], float(row[i])) for i in order[:n]]


def adjusted_rand_from_table(table) -> float:
    """Adjusted Rand index of two labelings given their contingency table (Hubert & Arabie,
    as `sklearn.metrics.adjusted_rand_score`); 1 when both put all rows in one cluster."""
    t = np.asarray(table, dtype=float)

    def pairs(x):
        return np.sum(x * (x - 1) / 2)

    n = t.sum()
    index, a, b = pairs(t), pairs(t.sum(axis=1)), pairs(t.sum(axis=0))
    total = n * (n - 1) / 2
    if total == 0:
        return 1.0
    expected = a * b / total
    maximum = (a + b) / 2
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


@dataclass(frozen=True)
class ClusterGeometry:
    """What the per-row silhouette needs of each cluster: size, mean point, mean |x|^2."""

    sizes: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    mean_sq_norms: np.ndarray  # (k,)


def silhouettes(x: np.ndarray, labels: np.ndarray, geo: ClusterGeometry) -> np.ndarray:
    """Per-row silhouette with squared Euclidean distance, exactly as Spark's
    `ClusteringEvaluator` defines it, from cluster aggregates (O(rows x k), no pairs):
    the mean squared distance of x to cluster C is |x|^2 - 2 x.mean_C + mean_C(|y|^2); for x's
    own cluster the sum is divided by N_C - 1 (x itself excluded); a singleton scores 0."""
    x = np.asarray(x, dtype=float)
    labels = np.asarray(labels, dtype=int)
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[:, None] - 2 * x @ geo.means.T + geo.mean_sq_norms[None, :]  # (n, k)
    d = np.maximum(d, 0.0)
    rows = np.arange(len(x))
    own_n = geo.sizes[labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = d[rows, labels] * own_n / (own_n - 1)
    others = d.copy()
    others[rows, labels] = np.inf
    others[:, geo.sizes == 0] = np.inf
    b = others.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (b - a) / np.maximum(a, b)
    s[(own_n <= 1) | ~np.isfinite(s)] = 0.0
    return s


def geometry_of(x: np.ndarray, labels: np.ndarray, k: int) -> ClusterGeometry:
    """The cluster aggregates of an in-memory sample."""
    x = np.asarray(x, dtype=float)
    sizes = np.bincount(labels, minlength=k).astype(float)
    means, sq = np.zeros((k, x.shape[1])), np.zeros(k)
    norms = np.einsum("ij,ij->i", x, x)
    for c in range(k):
        if sizes[c]:
            means[c], sq[c] = x[labels == c].mean(axis=0), norms[labels == c].mean()
    return ClusterGeometry(sizes, means, sq)


def _sample_model(algorithm: str, k: int, seed: int, max_iter: int):
    from sklearn.cluster import BisectingKMeans, KMeans
    from sklearn.mixture import GaussianMixture

    if algorithm == "kmeans":
        return KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed)
    if algorithm == "bisecting_kmeans":
        return BisectingKMeans(n_clusters=k, max_iter=max_iter, random_state=seed)
    return GaussianMixture(n_components=k, max_iter=max_iter, random_state=seed,
                           reg_covar=1e-4)


def select_k(x: np.ndarray, algorithm: str, ks: list[int], seeds: list[int],
             max_iter: int) -> tuple[list[KScore], dict[int, int]]:
    """Score every k on an in-memory sample: the mean silhouette (squared Euclidean, as MLlib's
    evaluator) over fits with each seed (scikit-learn's KMeans / BisectingKMeans /
    GaussianMixture, the counterparts of the MLlib estimators) and their agreement (mean
    pairwise adjusted Rand). Returns the scores and, per k, the seed of the best fit."""
    from sklearn.metrics import adjusted_rand_score

    scores, best = [], {}
    for k in ks:
        fits = []
        for s in seeds:
            labels = _sample_model(algorithm, k, s, max_iter).fit_predict(x)
            _, labels = np.unique(labels, return_inverse=True)
            sil = (float(np.mean(silhouettes(x, labels, geometry_of(x, labels, k))))
                   if labels.max() > 0 else float("nan"))
            fits.append((sil, s, labels))
        aris = [adjusted_rand_score(a[2], b[2]) for i, a in enumerate(fits)
                for b in fits[i + 1:]]
        sils = [f[0] for f in fits if np.isfinite(f[0])]
        scores.append(KScore(k, float(np.mean(sils)) if sils else float("nan"),
                             float(np.mean(aris)) if aris else float("nan")))
        best[k] = max(fits, key=lambda f: np.nan_to_num(f[0], nan=-2.0))[1]
    return scores, best
