"""Robust outlier scores: fitted on a bounded sample, applied to any batch of rows.

Features are first robust-scaled (`z = (x - median) / (IQR / 1.349)`, missing values at the
median). `mahalanobis` projects z onto the sample's leading principal components (at most
`components`, fewer when they already hold 99.9% of the variance; radiomics features are often
collinear, and the Minimum Covariance Determinant fit grows with the cube of the dimension) and
takes the robust distance under scikit-learn's MCD fit there; what the components leave out
(the residual of the projection) is added in chi-square units (its squared norm divided by its
sample median times the chi-square median), so an outlier off the leading components still
scores. The squared score is about chi-square with as many degrees of freedom as features
(`p_values`). `isolation_forest` is scikit-learn's IsolationForest on z (score: minus its
`score_samples`). The features named as drivers of an outlier are those with the largest |z|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

IQR_TO_SD = 1.349
Z_CLIP = 1e3


@dataclass
class OutlierModel:
    """A fitted scorer (picklable: Spark broadcasts it to the tasks)."""

    method: str
    names: list[str]
    center: np.ndarray
    scale: np.ndarray
    estimator: Any
    components: np.ndarray | None = None  # (n_components, features), Mahalanobis only
    residual_scale: float = 0.0  # divides the squared residual norm (0: no residual term)
    dof: int = 0

    @classmethod
    def fit(cls, sample: np.ndarray, names: list[str], center, iqr, method: str = "mahalanobis",
            seed: int = 0, components: int = 10) -> OutlierModel:
        """Fit on `sample` (rows x features) given each feature's median and IQR."""
        from sklearn.covariance import MinCovDet
        from sklearn.decomposition import PCA
        from sklearn.ensemble import IsolationForest

        center = np.asarray(center, dtype=float)
        scale = np.asarray(iqr, dtype=float) / IQR_TO_SD
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        model = cls(method, list(names), center, scale, None, dof=len(names))
        z = model.scaled(sample)
        if method == "isolation_forest":
            model.estimator = IsolationForest(n_estimators=100, random_state=seed).fit(z)
            return model
        if method != "mahalanobis":
            raise ValueError(f"unknown outlier method {method!r}")
        max_k = max(1, min(z.shape[1], len(z) // 5, components))
        pca = PCA(n_components=min(z.shape[1], len(z)), random_state=seed).fit(z)
        kept = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), 0.999) + 1)
        model.components = pca.components_[:min(kept, max_k)]
        model.estimator = MinCovDet(random_state=seed).fit(z @ model.components.T)
        rest = z.shape[1] - len(model.components)
        if rest > 0:
            res = np.median(model._residual2(z))
            model.residual_scale = float(res / stats.chi2.median(rest)) if res > 0 else 0.0
        return model

    def _residual2(self, z: np.ndarray) -> np.ndarray:
        proj = (z @ self.components.T) @ self.components
        return np.einsum("ij,ij->i", z - proj, z - proj)

    def scaled(self, x: np.ndarray) -> np.ndarray:
        """Robust z-scores; missing values (NaN, infinities) at 0, the median."""
        x = np.asarray(x, dtype=float)
        z = (np.where(np.isfinite(x), x, np.nan) - self.center) / self.scale
        return np.clip(np.nan_to_num(z, nan=0.0, posinf=Z_CLIP, neginf=-Z_CLIP), -Z_CLIP, Z_CLIP)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Higher is more unusual: the robust distance, or IsolationForest's anomaly score."""
        z = self.scaled(x)
        if self.method == "isolation_forest":
            return -self.estimator.score_samples(z)
        d2 = self.estimator.mahalanobis(z @ self.components.T)
        if self.residual_scale > 0:
            d2 = d2 + self._residual2(z) / self.residual_scale
        return np.sqrt(d2)

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        """Mahalanobis: chi-square tail probability of the squared distance (NaN otherwise)."""
        if self.method != "mahalanobis":
            return np.full(len(scores), np.nan)
        dof = self.dof if self.residual_scale > 0 else len(self.components)
        return stats.chi2.sf(np.asarray(scores) ** 2, dof)

    def drivers(self, x: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per row, the `k` features furthest from the median in robust SD units."""
        z = self.scaled(x)
        top = np.argsort(-np.abs(z), axis=1)[:, :k]
        return [[(self.names[j], float(z[i, j])) for j in row] for i, row in enumerate(top)]
