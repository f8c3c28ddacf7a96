"""PNG evaluation plots: ROC, precision-recall, calibration, confusion matrix, top-N importances.

The curves are scikit-learn's own Displays (`RocCurveDisplay`, `PrecisionRecallDisplay`,
`CalibrationDisplay`, `ConfusionMatrixDisplay`, each `.from_predictions(..., ax=ax)`) drawn on
the axes of a matplotlib `Figure` this module owns on an Agg canvas, so no pyplot figure is
created and no global backend is switched: safe in workers and threads. Each function takes
arrays and a target (a path, whose folder is created, or a writable binary file such as a
pyarrow output stream), writes a PNG and returns the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ArrayLike = Sequence[Any] | np.ndarray
Target = str | Path | IO[bytes]
DPI = 100


def _figure(size: tuple[float, float] = (5.0, 5.0)) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, target: Target) -> Any:
    if isinstance(target, str | Path):
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", dpi=DPI)
    return target


def _binary(y_true: ArrayLike, y_score: ArrayLike, pos_label: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    if pos_label is None:
        pos_label = np.unique(y)[-1]
    return (y == pos_label).astype(int), np.asarray(y_score, dtype=float)


def _curve(display: Any, y_true: ArrayLike, y_score: ArrayLike, path: Target, pos_label: Any,
           title: str, xlabel: str, ylabel: str) -> Any:
    """A scikit-learn curve Display (ROC or precision-recall) with its chance level."""
    y, s = _binary(y_true, y_score, pos_label)
    fig = _figure()
    ax = fig.add_subplot()
    display.from_predictions(y, s, pos_label=1, name="model", ax=ax, plot_chance_level=True)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return _save(fig, path)


def plot_roc(y_true: ArrayLike, y_score: ArrayLike, path: Target, *, pos_label: Any = None,
             title: str = "ROC curve") -> Any:
    """ROC curve with its AUC and the chance diagonal."""
    from sklearn.metrics import RocCurveDisplay

    return _curve(RocCurveDisplay, y_true, y_score, path, pos_label, title,
                  "false positive rate (1 - specificity)", "true positive rate (sensitivity)")


def plot_pr(y_true: ArrayLike, y_score: ArrayLike, path: Target, *, pos_label: Any = None,
            title: str = "Precision-recall curve") -> Any:
    """Precision-recall curve with its average precision and the prevalence baseline."""
    from sklearn.metrics import PrecisionRecallDisplay

    return _curve(PrecisionRecallDisplay, y_true, y_score, path, pos_label, title,
                  "recall (sensitivity)", "precision (PPV)")


def plot_calibration(
    y_true: ArrayLike, y_prob: ArrayLike, path: Target, *, n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform", pos_label: Any = None,
    title: str = "Calibration (reliability diagram)",
) -> Any:
    """Observed positive rate per predicted-probability bin, over a histogram of predictions."""
    from sklearn.calibration import CalibrationDisplay

    y, p = _binary(y_true, y_prob, pos_label)
    brier = float(np.mean((p - y) ** 2))
    fig = _figure((5.0, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    CalibrationDisplay.from_predictions(y, p, n_bins=n_bins, strategy=strategy, pos_label=1,
                                        name=f"model (Brier = {brier:.3f})", ax=top)
    top.set(title=title, xlabel="")
    bottom.hist(p, bins=n_bins, range=(0, 1), color="tab:blue", alpha=0.7)
    bottom.set(xlabel="predicted probability", ylabel="count")
    return _save(fig, path)


def plot_confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, path: Target, *,
    labels: Sequence[Any] | None = None, normalize: bool = False,
    title: str = "Confusion matrix",
) -> Any:
    """Counts (or row-normalised rates) of true vs predicted class, annotated in each cell."""
    from sklearn.metrics import ConfusionMatrixDisplay

    classes = list(labels) if labels is not None else sorted(np.unique(np.r_[y_true, y_pred]))
    fig = _figure((5.0, 4.5))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=classes, display_labels=[str(c) for c in classes],
        normalize="true" if normalize else None, values_format=".2f" if normalize else "d",
        cmap="Blues", ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def plot_feature_importance(
    names: Sequence[str], values: ArrayLike, path: Target, *, top_n: int = 20,
    title: str = "Feature importance",
) -> Any:
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
