"""PNG evaluation plots: ROC, precision-recall, calibration, confusion matrix, top-N importances.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so
the functions are safe in workers and threads. Each takes arrays and an output path, creates the
parent folder, writes the PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medspark.models.metrics import average_precision, roc_auc

ArrayLike = Sequence[Any] | np.ndarray
DPI = 100


def _figure(size: tuple[float, float] = (5.0, 5.0)) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out


def _binary(y_true: ArrayLike, y_score: ArrayLike, pos_label: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    if pos_label is None:
        pos_label = np.unique(y)[-1]
    return (y == pos_label).astype(int), np.asarray(y_score, dtype=float)


def plot_roc(
    y_true: ArrayLike, y_score: ArrayLike, path: str | Path, *, pos_label: Any = None,
    title: str = "ROC curve",
) -> Path:
    """ROC curve with its AUC and the chance diagonal."""
    from sklearn.metrics import roc_curve

    y, s = _binary(y_true, y_score, pos_label)
    fpr, tpr, _ = roc_curve(y, s)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {roc_auc(y, s):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlabel="false positive rate (1 - specificity)", ylabel="true positive rate "
           "(sensitivity)", title=title, xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(
    y_true: ArrayLike, y_score: ArrayLike, path: str | Path, *, pos_label: Any = None,
    title: str = "Precision-recall curve",
) -> Path:
    """Precision-recall curve with its average precision and the prevalence baseline."""
    from sklearn.metrics import precision_recall_curve

    y, s = _binary(y_true, y_score, pos_label)
    precision, recall, _ = precision_recall_curve(y, s)
    fig = _figure()
    ax = fig.add_subplot()
    ax.step(recall, precision, where="post", lw=2, label=f"AP = {average_precision(y, s):.3f}")
    ax.axhline(y.mean(), ls="--", color="grey", lw=1, label=f"prevalence = {y.mean():.3f}")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=title,
           xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_calibration(
    y_true: ArrayLike, y_prob: ArrayLike, path: str | Path, *, n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform", pos_label: Any = None,
    title: str = "Calibration (reliability diagram)",
) -> Path:
    """Observed positive rate per predicted-probability bin, over a histogram of predictions."""
    from sklearn.calibration import calibration_curve

    y, p = _binary(y_true, y_prob, pos_label)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    brier = float(np.mean((p - y) ** 2))
    fig = _figure((5.0, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    top.plot(predicted, observed, "o-", lw=2, label=f"model (Brier = {brier:.3f})")
    top.set(ylabel="observed fraction of positives", title=title, xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.hist(p, bins=n_bins, range=(0, 1), color="tab:blue", alpha=0.7)
    bottom.set(xlabel="predicted probability", ylabel="count")
    return _save(fig, path)


def plot_confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, path: str | Path, *,
    labels: Sequence[Any] | None = None, normalize: bool = False,
    title: str = "Confusion matrix",
) -> Path:
    """Counts (or row-normalised rates) of true vs predicted class, annotated in each cell."""
    from sklearn.metrics import confusion_matrix

    classes = list(labels) if labels is not None else sorted(np.unique(np.r_[y_true, y_pred]))
    cm = confusion_matrix(y_true, y_pred, labels=classes).astype(float)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure((5.0, 4.5))
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ticks = np.arange(len(classes))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=[str(c) for c in classes],
           yticklabels=[str(c) for c in classes], xlabel="predicted", ylabel="true", title=title)
    half = cm.max() / 2 if cm.size else 0
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                color="white" if v > half else "black")
    return _save(fig, path)


def plot_feature_importance(
    names: Sequence[str], values: ArrayLike, path: str | Path, *, top_n: int = 20,
    title: str = "Feature importance",
) -> Path:
    """Horizontal bars of the `top_n` largest |values|; negative values (coefficients) in red."""
    v = np.asarray(values, dtype=float)
    if len(names) != len(v):
        raise ValueError(f"{len(names)} names for {len(v)} values")
    order = np.argsort(-np.abs(v), kind="stable")[:top_n][::-1]
    fig = _figure((6.5, max(2.5, 0.3 * len(order) + 1.2)))
    ax = fig.add_subplot()
    colors = ["tab:red" if v[i] < 0 else "tab:blue" for i in order]
    ax.barh(np.arange(len(order)), v[order], color=colors)
    ax.set_yticks(np.arange(len(order)), [str(names[i]) for i in order])
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel="importance / coefficient", title=title)
    return _save(fig, path)
