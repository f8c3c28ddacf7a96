"""scikit-learn estimators as `medspark train` candidates: validation, task, MLlib-shaped output.

A candidate whose `algorithm` contains a dot (`sklearn.ensemble.HistGradientBoostingClassifier`)
is a scikit-learn estimator named by import path (`resolve_class` allows `sklearn.` and
`medspark.` only); MLlib names never contain one. Spark-free: the train job calls
`predict_outputs` inside Spark tasks (CV folds) and pandas UDFs (held-out split, predict), so
every scikit-learn model's predictions reach the metrics in the shape MLlib models give them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from medspark.models.algorithms import is_estimator_path, param_grid
from medspark.models.sklearn_estimators import resolve_estimator

__all__ = ["class_probabilities", "estimator_task", "estimator_weights", "is_estimator_path",
           "predict_outputs"]

# sklearn's estimator_type tag -> medspark task (GaussianMixture is a "density_estimator")
TASK_OF_TYPE = {"classifier": "classification", "regressor": "regression",
                "clusterer": "clustering", "density_estimator": "clustering"}


def estimator_task(path: str, params: Mapping[str, Any] | None = None) -> str:
    """`classification` / `regression` / `clustering` of the estimator at `path`.

    Raises ValueError for estimators of no such kind (transformers, outlier detectors) and for
    clusterers that cannot assign new rows (no `predict`, e.g. AgglomerativeClustering).
    """
    from sklearn.utils import get_tags

    est = resolve_estimator(path, params)
    task = TASK_OF_TYPE.get(str(get_tags(est).estimator_type))
    if task is None:
        raise ValueError(f"{path} is not a classifier, regressor or clusterer")
    if not hasattr(est, "predict"):
        raise ValueError(f"{path} has no predict: it cannot score held-out rows")
    return task


def check_estimator_candidate(path: str, params: Mapping[str, Any],
                              grid: Mapping[str, Sequence[Any]]) -> str:
    """Validate a candidate and return its task: the class is an importable estimator, every
    `params` / `grid` key is one of its `get_params()` keys (nested `step__param` included),
    every value passes scikit-learn's own parameter constraints, no grid list is empty."""
    task = estimator_task(path, params)
    for key, values in grid.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{path}: grid {key!r} must be a non-empty list")
    for combo in param_grid(dict(params), dict(grid)):  # as the train job fits them
        resolve_estimator(path, combo)
    return task


# ---------------------------------------------------------------------------- outputs
def class_probabilities(model: Any, X: pd.DataFrame, n_classes: int) -> np.ndarray:
    """(rows, n_classes) probabilities by class index (labels are 0..n-1): `predict_proba`;
    without it, the sigmoid (binary) or softmax of `decision_function`, as the train job
    treats MLlib's LinearSVC margins. A class absent from the fit gets probability 0."""
    from scipy.special import expit, softmax

    classes = np.asarray(model.classes_).astype(int)
    if hasattr(model, "predict_proba"):
        prob = np.asarray(model.predict_proba(X), dtype="float64")
    else:
        margin = np.asarray(model.decision_function(X), dtype="float64")
        prob = (np.column_stack([1 - expit(margin), expit(margin)]) if margin.ndim == 1
                else softmax(margin, axis=1))
    out = np.zeros((len(X), max(n_classes, int(classes.max()) + 1)))
    out[:, classes] = prob
    return out


def model_inputs(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The rows as the pipeline's final estimator sees them (after scaling)."""
    steps = getattr(model, "steps", None)
    if steps and len(steps) > 1:
        return np.asarray(model[:-1].transform(X), dtype="float64")
    return X.to_numpy(dtype="float64")


def predict_outputs(model: Any, X: pd.DataFrame, task: str, n_classes: int = 0
                    ) -> dict[str, np.ndarray | None]:
    """A fitted pipeline's predictions, shaped like an MLlib model's: `prediction` (class
    index, value or cluster), `probability` (classification; clusterers with `predict_proba`)
    and `features` (clustering: what silhouette is computed on)."""
    out: dict[str, np.ndarray | None] = {
        "prediction": np.asarray(model.predict(X), dtype="float64"),
        "probability": None, "features": None}
    if task == "classification":
        out["probability"] = class_probabilities(model, X, n_classes)
    elif task == "clustering":
        if hasattr(model, "predict_proba"):
            out["probability"] = np.asarray(model.predict_proba(X), dtype="float64")
        out["features"] = model_inputs(model, X)
    return out


def estimator_weights(model: Any, feature_cols: Sequence[str]
                      ) -> tuple[str, list[float]] | None:
    """("importance" | "coefficient", one value per feature) of the final estimator: its
    `feature_importances_`, else a single row of `coef_`; None otherwise (e.g. multiclass)."""
    est = model[-1] if getattr(model, "steps", None) else model
    for kind, attr in (("importance", "feature_importances_"), ("coefficient", "coef_")):
        try:
            values = np.asarray(getattr(est, attr), dtype="float64")
        except (AttributeError, TypeError, ValueError):
            continue
        if values.size == len(feature_cols):
            return kind, values.ravel().tolist()
    return None


# ---------------------------------------------------------------------------- fitting
def estimator_for(algorithm: str, params: Mapping[str, Any], n_rows: int
                  ) -> tuple[str, dict[str, Any]]:
    """(import path, parameters) to fit: the candidate itself, or for an MLlib name its
    scikit-learn counterpart translated for a fit on `n_rows` rows (`engine: auto`)."""
    if is_estimator_path(algorithm):
        return algorithm, dict(params)
    from medspark.models.counterparts import sklearn_params

    return sklearn_params(algorithm, dict(params), n_rows)


def fit_pipeline(algorithm: str, params: Mapping[str, Any], X: pd.DataFrame,
                 y: np.ndarray | None, *, standardize: bool, seed: int,
                 n_jobs: int | None = None) -> Any:
    """[StandardScaler if standardize] + the estimator, fitted on (X, y). `n_jobs` is set on
    estimators that take it when the candidate leaves it unset (the winner's refit)."""
    import warnings

    from medspark.models.sklearn_estimators import make_pipeline

    path, fit_params = estimator_for(algorithm, params, len(X))
    model = make_pipeline(path, fit_params, scale=standardize, seed=seed)
    est = model[-1]
    if n_jobs and "n_jobs" in est.get_params(deep=False) and "n_jobs" not in fit_params:
        est.set_params(n_jobs=n_jobs)
    with warnings.catch_warnings():  # estimators where n_jobs no longer does anything say so
        warnings.filterwarnings("ignore", message=".*'n_jobs' has no effect.*")
        return model.fit(X, y)
