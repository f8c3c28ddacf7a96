"""Selection scores from small sufficient statistics, the same whoever counted them.

A CV fold's score is computed from statistics whose size does not grow with the rows: a
confusion matrix (accuracy, F1), two score histograms of `HIST_BINS` bins (ROC AUC, PR AUC),
five sums (RMSE, MAE, R²) or per-cluster sums (silhouette). A scikit-learn fold counts them with
numpy inside its Spark task (`fold_stats`), an MLlib fold with Spark aggregates
(`medspark.spark.models.scoring`); `score_from_stats` turns either into the one number, so the
two kinds of candidate are ranked by the same definition:

- accuracy; f1 = support-weighted F1 over the classes (MLlib's `weightedFMeasure`);
- roc_auc = P(score_pos > score_neg) + P(=)/2 with scores binned to 1/HIST_BINS (pairs in one
  bin count 1/2: within 1e-4 of the exact AUC for spread scores);
- pr_auc = average precision over the same bins (ties per bin, as scikit-learn's
  `average_precision_score` treats tied scores);
- rmse, mae, r2 (R² NaN for a constant truth);
- silhouette = the squared-Euclidean silhouette of MLlib's `ClusteringEvaluator`
  (`silhouette_squared`).

Held-out test metrics with bootstrap CIs are `medspark.models.metrics` (exact).
"""

from __future__ import annotations

from typing import Any

import numpy as np

HIST_BINS = 10_000


def score_bins(score: np.ndarray) -> np.ndarray:
    """Histogram bin of each probability in [0, 1]."""
    return np.clip((np.asarray(score, dtype=float) * HIST_BINS).astype(np.int64), 0,
                   HIST_BINS - 1)


def score_values(task: str, n_labels: int, prediction: np.ndarray,
                 probability: np.ndarray | None) -> np.ndarray:
    """The `score` column of scored rows (what `medspark.spark.models.scoring.add_scores`
    derives in Spark): the value (regression), the positive-class probability (two classes),
    else the top probability (NaN where a model has none)."""
    prediction = np.asarray(prediction, dtype=float)
    if task == "regression":
        return prediction
    if probability is None:
        return np.full(len(prediction), np.nan)
    prob = np.asarray(probability, dtype=float)
    return prob[:, 1] if task == "classification" and n_labels == 2 else prob.max(axis=1)


def fold_stats(metric: str, y: np.ndarray | None, pred: np.ndarray,
               prob: np.ndarray | None = None, x: np.ndarray | None = None,
               n_classes: int = 0) -> dict[str, Any]:
    """The statistics `metric` needs, counted with numpy from one fold's predictions."""
    pred = np.asarray(pred, dtype=float)
    if metric in ("accuracy", "f1"):
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(cm, (np.asarray(y, dtype=int), pred.astype(int)), 1)
        return {"confusion": cm}
    if metric in ("roc_auc", "pr_auc"):
        positive = np.asarray(y, dtype=int) == 1
        bins = score_bins(np.asarray(prob)[:, 1])
        return {"pos": np.bincount(bins[positive], minlength=HIST_BINS),
                "neg": np.bincount(bins[~positive], minlength=HIST_BINS)}
    if metric in ("rmse", "mae", "r2"):
        y = np.asarray(y, dtype=float)
        err = pred - y
        return {"n": len(y), "sse": float(err @ err), "sae": float(np.abs(err).sum()),
                "sy": float(y.sum()), "syy": float(y @ y)}
    if metric == "silhouette":
        return {"silhouette": silhouette_squared(np.asarray(x, dtype=float), pred)}
    raise ValueError(f"unknown metric {metric!r}")


def score_from_stats(metric: str, stats: dict[str, Any]) -> float:
    """The fold score of `metric` from `fold_stats` (or the same statistics from Spark)."""
    if metric == "accuracy":
        cm = np.asarray(stats["confusion"], dtype=float)
        return float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    if metric == "f1":
        return weighted_f1(np.asarray(stats["confusion"], dtype=float))
    if metric == "roc_auc":
        return binned_auc(np.asarray(stats["pos"]), np.asarray(stats["neg"]))
    if metric == "pr_auc":
        return binned_average_precision(np.asarray(stats["pos"]), np.asarray(stats["neg"]))
    if metric in ("rmse", "mae", "r2"):
        n = stats["n"]
        if not n:
            return float("nan")
        if metric == "rmse":
            return float(np.sqrt(stats["sse"] / n))
        if metric == "mae":
            return float(stats["sae"] / n)
        ss_tot = stats["syy"] - stats["sy"] ** 2 / n
        return 1 - stats["sse"] / ss_tot if ss_tot > 1e-12 * max(stats["syy"], 1) else \
            float("nan")
    if metric == "silhouette":
        return float(stats["silhouette"])
    raise ValueError(f"unknown metric {metric!r}")


def weighted_f1(cm: np.ndarray) -> float:
    """Support-weighted mean of the per-class F1 (rows: truth, columns: prediction)."""
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                      0.0)
    total = actual.sum()
    return float((f1 * actual).sum() / total) if total else float("nan")


def binned_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC from per-bin positive and negative counts (ascending score bins)."""
    n_pos, n_neg = pos.sum(), neg.sum()
    if not n_pos or not n_neg:
        return float("nan")
    below = np.cumsum(neg) - neg  # negatives in lower bins
    return float((pos * (below + neg / 2)).sum() / (n_pos * n_neg))


def binned_average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision from per-bin counts: thresholds at each bin, highest first."""
    n_pos = pos.sum()
    if not n_pos:
        return float("nan")
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    hit = pos[::-1] > 0
    return float((pos[::-1][hit] * tp[hit] / (tp[hit] + fp[hit])).sum() / n_pos)


def silhouette_squared(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with squared Euclidean distances, from per-cluster sums (O(n k d)), as
    MLlib's `ClusteringEvaluator` computes it; NaN with fewer than two clusters."""
    labels = np.asarray(labels)
    clusters, codes = np.unique(labels, return_inverse=True)
    if len(clusters) < 2:
        return float("nan")
    counts = np.bincount(codes).astype(float)
    sums = np.zeros((len(clusters), x.shape[1]))
    np.add.at(sums, codes, x)
    sq = np.bincount(codes, weights=(x * x).sum(axis=1))
    norms = (x * x).sum(axis=1)
    # mean squared distance from each point to each cluster: |x|^2 - 2 x.mu + mean |y|^2
    dist = norms[:, None] - 2 * x @ (sums / counts[:, None]).T + (sq / counts)[None, :]
    own = dist[np.arange(len(x)), codes]
    n_own = counts[codes]
    a = np.where(n_own > 1, own * n_own / np.maximum(n_own - 1, 1), 0.0)
    dist[np.arange(len(x)), codes] = np.inf
    b = dist.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(n_own > 1, np.where(a < b, 1 - a / b, np.where(a > b, b / a - 1, 0.0)),
                     0.0)
    return float(s.mean())
