"""Evaluation metrics with percentile bootstrap 95% CIs, as JSON-able dicts.

Every metric comes as `{"value", "ci_low", "ci_high", "n_boot_used"}`. With `groups` (patient
ids) the bootstrap resamples whole groups, since rows of one patient are not independent and a
row-level bootstrap would give too narrow intervals. Resamples where a metric is undefined (one
class only for classification; constant truth for R²) are skipped, and `n_boot_used` says how
many were kept. Same inputs and seed give the same numbers. Binary classification metrics are
computed with vectorised numpy (checked against sklearn in the tests) so 1000 resamples are fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from medspark.jsonable import num, py

ArrayLike = Sequence[Any] | np.ndarray
Scores = dict[str, float]


# ------------------------------------------------------------------------------ binary kernels
def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic (ties count 1/2); NaN with one class."""
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the precision-recall step curve, as sklearn's `average_precision_score`."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]  # end of each tied score block
    tps = np.cumsum(y_sorted)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def binary_scores(y: np.ndarray, s: np.ndarray, p: np.ndarray) -> Scores:
    """All scalar binary metrics for 0/1 truth `y`, scores `s` and 0/1 predictions `p`."""
    tp = float(np.sum((p == 1) & (y == 1)))
    tn = float(np.sum((p == 0) & (y == 0)))
    fp = float(np.sum((p == 1) & (y == 0)))
    fn = float(np.sum((p == 0) & (y == 1)))
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "accuracy": (tp + tn) / len(y),
        "balanced_accuracy": (sens + spec) / 2,
        "roc_auc": roc_auc(y, s),
        "pr_auc": average_precision(y, s),
        "f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 0.0,
        "sensitivity": sens,
        "specificity": spec,
        "brier": float(np.mean((s - y) ** 2)),
    }


def regression_scores(y: np.ndarray, p: np.ndarray) -> Scores:
    """RMSE, MAE and R² (NaN when the truth is constant)."""
    err = p - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
    }


# ----------------------------------------------------------------------------------- bootstrap
def _resampler(
    n: int, groups: ArrayLike | None, rng: np.random.Generator
) -> Callable[[], np.ndarray]:
    """A function drawing one bootstrap sample of row positions (whole groups when given)."""
    if groups is None:
        return lambda: rng.integers(0, n, size=n)
    g = np.asarray(groups)
    if len(g) != n:
        raise ValueError(f"groups has {len(g)} entries for {n} rows")
    codes = np.unique(g, return_inverse=True)[1].ravel()
    order = np.argsort(codes, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    n_groups = len(members)
    return lambda: np.concatenate([members[i] for i in rng.integers(0, n_groups, n_groups)])


def bootstrap(
    score: Callable[[np.ndarray], Scores],
    n: int,
    *,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    usable: Callable[[np.ndarray], bool] = lambda idx: True,
) -> dict[str, dict[str, Any]]:
    """Point value and percentile CI of each metric returned by `score(positions)`.

    Resamples failing `usable` are skipped for every metric; a metric that is NaN on a kept
    resample skips that one only. `n_boot_used` counts what each interval rests on.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    point = score(np.arange(n))
    draw = _resampler(n, groups, np.random.default_rng(seed))
    samples: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        idx = draw()
        if not usable(idx):
            continue
        for k, v in score(idx).items():
            if not np.isnan(v):
                samples[k].append(v)
    tail = 100 * (1 - ci) / 2
    out: dict[str, dict[str, Any]] = {}
    for k, v in point.items():
        vals = np.asarray(samples[k])
        low, high = np.percentile(vals, [tail, 100 - tail]) if len(vals) else (np.nan, np.nan)
        out[k] = {
            "value": num(v), "ci_low": num(low), "ci_high": num(high), "n_boot_used": len(vals)
        }
    return out


# ------------------------------------------------------------------------------------- public
def _binary_truth(y_true: ArrayLike, pos_label: Any) -> tuple[np.ndarray, list[Any]]:
    y = np.asarray(y_true)
    labels = sorted(np.unique(y).tolist())
    if len(labels) > 2:
        raise ValueError(f"binary metrics only: y_true has {len(labels)} classes {labels}")
    if pos_label is None:
        if set(labels) <= {0, 1}:
            pos_label = 1
        elif len(labels) == 2:
            pos_label = labels[-1]
        else:
            raise ValueError(f"y_true holds one class only ({labels}): pass pos_label")
    neg = [v for v in labels if v != pos_label]
    negative = neg[0] if neg else (0 if pos_label == 1 else None)
    return (y == pos_label).astype(int), [negative, pos_label]


def classification_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    y_pred: ArrayLike | None = None,
    threshold: float = 0.5,
    pos_label: Any = None,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Binary metrics with bootstrap CIs; `y_score` = probability of the positive class.

    Predictions are `y_score >= threshold` unless `y_pred` is given. The positive class is
    `pos_label` (default: 1 for 0/1 or bool labels, else the larger of the two labels).
    Resamples holding one class only are skipped for every metric (paired intervals);
    `confusion_matrix` (rows: true [neg, pos], columns: predicted) has no interval.
    """
    y, labels = _binary_truth(y_true, pos_label)
    s = np.asarray(y_score, dtype=float)
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.shape != y.shape or np.isnan(s).any():
        raise ValueError(f"y_score must be {len(y)} finite scores, got shape {s.shape}")
    if y_pred is None:
        p = (s >= threshold).astype(int)
    else:
        p = (np.asarray(y_pred) == labels[1]).astype(int)
    out = bootstrap(
        lambda i: binary_scores(y[i], s[i], p[i]),
        len(y),
        groups=groups,
        n_boot=n_boot,
        seed=seed,
        ci=ci,
        usable=lambda i: 0 < y[i].sum() < len(i),
    )
    cm = [[int(np.sum((y == t) & (p == q))) for q in (0, 1)] for t in (0, 1)]
    out["confusion_matrix"] = {
        "value": cm, "labels": [py(v) for v in labels], "ci_low": None, "ci_high": None,
        "n_boot_used": 0,
    }
    return out


def regression_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """RMSE, MAE, R² with bootstrap CIs (R² skips resamples with constant truth)."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"y_true {y.shape} and y_pred {p.shape} differ in shape")
    return bootstrap(
        lambda i: regression_scores(y[i], p[i]), len(y), groups=groups, n_boot=n_boot,
        seed=seed, ci=ci,
    )


def clustering_metrics(
    X: ArrayLike,
    labels: ArrayLike,
    *,
    noise_label: Any = -1,
    sample_size: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Silhouette (noise points left out; None with < 2 clusters) and cluster sizes.

    No bootstrap here: resampling duplicates points, which biases the silhouette upward.
    `sample_size` caps the O(n²) silhouette on large tables (seeded subsample).
    """
    from sklearn.metrics import silhouette_score

    x = np.asarray(X, dtype=float)
    lab = np.asarray(labels)
    keep = lab != noise_label if noise_label is not None else np.ones(len(lab), dtype=bool)
    n_clusters = len(np.unique(lab[keep]))
    sil = None
    if 2 <= n_clusters <= keep.sum() - 1:
        sil = silhouette_score(x[keep], lab[keep], sample_size=sample_size, random_state=seed)
    values, counts = np.unique(lab, return_counts=True)
    sizes = {str(py(v)): int(c) for v, c in zip(values, counts, strict=True)}
    none = {"ci_low": None, "ci_high": None, "n_boot_used": 0}
    return {
        "silhouette": {"value": None if sil is None else float(sil), **none},
        "n_clusters": {"value": n_clusters, **none},
        "cluster_sizes": {"value": sizes, **none},
    }
