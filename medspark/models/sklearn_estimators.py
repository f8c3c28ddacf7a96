"""scikit-learn estimators named by import path: resolution, pipelines, grids, fold scoring.

Spark-free: `medspark.spark.sklearn_jobs` calls these on the driver and inside Spark tasks, and
the serial and parallel hyper-parameter searches share `evaluate_fold`, so both compute the
same numbers. Only classes under `sklearn.` and `medspark.` can be named (a config file must
not be able to import arbitrary code).
"""

from __future__ import annotations

import difflib
import importlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

ALLOWED_PREFIXES = ("sklearn.", "medspark.")
ScoreMethod = Literal["auto", "predict_proba", "decision_function", "predict"]
ParamGrid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]]


# ---------------------------------------------------------------------------- resolution
def resolve_class(path: str) -> type:
    """The estimator class at `path` (e.g. `sklearn.ensemble.RandomForestClassifier`)."""
    from sklearn.base import BaseEstimator

    if not isinstance(path, str) or not path.startswith(ALLOWED_PREFIXES):
        raise ValueError(
            f"estimator path {path!r} must start with one of {list(ALLOWED_PREFIXES)}"
        )
    module_name, _, name = path.rpartition(".")
    if not name.isidentifier() or not all(p.isidentifier() for p in module_name.split(".")):
        raise ValueError(f"estimator path {path!r} is not a dotted import path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"estimator path {path!r}: no module {module_name!r} ({exc})") from exc
    cls = getattr(module, name, None)
    if cls is None:
        public = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(name, public, n=3)
        hint = f"; did you mean {', '.join(f'{module_name}.{c}' for c in close)}?" if close else ""
        raise ValueError(f"estimator path {path!r}: {module_name} has no {name!r}{hint}")
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator) and hasattr(cls, "fit")):
        raise ValueError(f"{path!r} is not a scikit-learn estimator class")
    return cls


def resolve_estimator(path: str, params: Mapping[str, Any] | None = None) -> Any:
    """A new, unfitted estimator of the class at `path` with `params` set and validated.

    Unknown parameter names and values outside the estimator's declared constraints raise
    `ValueError` naming them. Nested parameters (`estimator__C`) are set after construction.
    """
    from sklearn.utils._param_validation import InvalidParameterError

    cls = resolve_class(path)
    params = dict(params or {})
    try:
        valid = set(cls._get_param_names())
    except RuntimeError as exc:  # an __init__ with *args
        raise ValueError(f"{path}: {exc}") from exc
    top = {k: v for k, v in params.items() if "__" not in k}
    nested = {k: v for k, v in params.items() if "__" in k}
    unknown = sorted(set(top) - valid)
    if unknown:
        raise ValueError(
            f"{path}: unknown parameter(s) {unknown}; valid: {sorted(valid)}"
        )
    try:
        est = cls(**top)
        if nested:
            est.set_params(**nested)
        validate = getattr(est, "_validate_params", None)
        if validate is not None:
            validate()
    except (InvalidParameterError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid parameters {params}: {exc}") from exc
    return est


# ---------------------------------------------------------------------------- pipelines
def make_pipeline(
    path: str,
    params: Mapping[str, Any] | None = None,
    impute: bool = True,
    scale: bool = True,
    seed: int | None = 0,
) -> Any:
    """Pipeline of [SimpleImputer(median)] + [StandardScaler] + the estimator (step `model`).

    With `seed`, an estimator `random_state` left at None is set to it, so fits repeat.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    est = resolve_estimator(path, params)
    if seed is not None and "random_state" in est.get_params(deep=False) and (
        est.get_params(deep=False)["random_state"] is None
    ):
        est.set_params(random_state=seed)
    steps: list[tuple[str, Any]] = []
    if impute:
        steps.append(("impute", SimpleImputer(strategy="median")))
    if scale:
        steps.append(("scale", StandardScaler()))
    steps.append(("model", est))
    return Pipeline(steps)


def feature_frame(pdf: pd.DataFrame, feature_cols: Sequence[str]) -> pd.DataFrame:
    """The feature columns as float64 (None -> NaN); a clear error for non-numeric ones."""
    missing = [c for c in feature_cols if c not in pdf.columns]
    if missing:
        raise KeyError(f"feature column(s) {missing} not in the frame")
    try:
        return pdf[list(feature_cols)].astype("float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature columns must be numeric: {exc}") from exc


def stable_order(pdf: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by `cols` (NaN last), so a fit does not depend on Spark's row order."""
    return pdf.sort_values(list(dict.fromkeys(cols)), kind="stable", ignore_index=True)


def check_labels(pdf: pd.DataFrame, label_col: str) -> pd.Series:
    """The label column; raises when any label is missing (rows are never dropped silently)."""
    if label_col not in pdf.columns:
        raise KeyError(f"label column {label_col!r} not in the frame")
    y = pdf[label_col]
    if y.isna().any():
        raise ValueError(f"{int(y.isna().sum())} row(s) have no label {label_col!r}")
    return y


# ---------------------------------------------------------------------------- scoring
def scorer(metric: str) -> Any:
    """sklearn scorer for `metric` (greater is better, e.g. `roc_auc`, `neg_log_loss`, `r2`)."""
    from sklearn.metrics import get_scorer, get_scorer_names

    if metric not in get_scorer_names():
        close = difflib.get_close_matches(metric, get_scorer_names(), n=3)
        raise ValueError(f"unknown metric {metric!r}; close: {close}")
    return get_scorer(metric)


def score_method(model: Any, method: ScoreMethod = "auto") -> str:
    """Which method gives one number per row: `auto` = positive-class probability for binary
    classifiers with `predict_proba`, else `decision_function`; `predict` for regressors."""
    from sklearn.base import is_classifier

    if method != "auto":
        if not hasattr(model, method):
            raise ValueError(f"{type(model).__name__} has no {method}")
        chosen = method
    elif not is_classifier(model):
        chosen = "predict"
    elif hasattr(model, "predict_proba"):
        chosen = "predict_proba"
    elif hasattr(model, "decision_function"):
        chosen = "decision_function"
    else:
        chosen = "predict"
    if is_classifier(model):
        classes = np.asarray(model.classes_)
        if chosen != "predict" and len(classes) != 2:
            raise ValueError(
                f"{chosen} gives one score per row only for binary classifiers "
                f"({len(classes)} classes); pass method='predict'"
            )
        if chosen == "predict" and not np.issubdtype(classes.dtype, np.number):
            raise ValueError("method='predict' needs numeric class labels for a double score")
    return chosen


def predict_scores(model: Any, X: pd.DataFrame, method: str) -> np.ndarray:
    """One float per row of `X` from a fitted model (`method` from `score_method`)."""
    if len(X) == 0:
        return np.empty(0, dtype="float64")
    out = getattr(model, method)(X)
    if method == "predict_proba":
        out = out[:, 1]
    return np.asarray(out, dtype="float64")


# ---------------------------------------------------------------------------- search
def expand_grid(path: str, grid: ParamGrid) -> list[dict[str, Any]]:
    """Candidates in sklearn `ParameterGrid` order (ids = positions), each validated."""
    from sklearn.model_selection import ParameterGrid

    candidates = [dict(c) for c in ParameterGrid(grid)]  # type: ignore[arg-type]
    if not candidates:
        raise ValueError("empty parameter grid")
    for c in candidates:
        resolve_estimator(path, c)
    return candidates


@dataclass(frozen=True)
class SearchData:
    """What each search task needs: features, labels (None: clustering), the fold positions."""

    X: pd.DataFrame
    y: np.ndarray | None
    folds: list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SearchSpec:
    """How each candidate is built and scored."""

    path: str
    candidates: list[dict[str, Any]]
    metric: str
    impute: bool = True
    scale: bool = True
    seed: int = 0


def evaluate_fold(data: SearchData, spec: SearchSpec, candidate_id: int, fold_id: int,
                  n_threads: int | None = 1,
                  apply: Callable[[Any, pd.DataFrame, np.ndarray | None], Any] | None = None,
                  ) -> dict[str, Any]:
    """Fit candidate on the fold's training rows and score its test rows (errors recorded).

    BLAS/OpenMP threads are capped to `n_threads` so the serial and Spark searches compute the
    same floating-point numbers (and Spark tasks do not oversubscribe the cores). With `apply`,
    `apply(model, X_test, y_test)` replaces the scorer: its result is the row's `output` (the
    train job evaluates the predictions it returns with its own metric).
    """
    from threadpoolctl import threadpool_limits

    train, test = data.folds[fold_id]
    row: dict[str, Any] = {"candidate_id": candidate_id, "fold_id": fold_id,
                           "score": math.nan, "fit_seconds": math.nan, "error": None}
    y_train, y_test = (None, None) if data.y is None else (data.y[train], data.y[test])
    start = time.perf_counter()
    try:
        with threadpool_limits(limits=n_threads):
            model = make_pipeline(spec.path, spec.candidates[candidate_id], spec.impute,
                                  spec.scale, spec.seed)
            model.fit(data.X.iloc[train], y_train)
            if apply is None:
                row["score"] = float(scorer(spec.metric)(model, data.X.iloc[test], y_test))
            else:
                row["output"] = apply(model, data.X.iloc[test], y_test)
    except Exception as exc:  # one failed candidate must not end the search
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["fit_seconds"] = time.perf_counter() - start
    return row


def leaderboard(results: Sequence[Mapping[str, Any]], spec: SearchSpec, k: int) -> pd.DataFrame:
    """Per candidate: params, fold scores, mean, sd (ddof=1), rank (ties -> lowest id).

    A candidate with any failed fold has NaN mean, its first error, and no rank.
    """
    by_id: dict[int, list[Mapping[str, Any]]] = {}
    for r in results:
        by_id.setdefault(int(r["candidate_id"]), []).append(r)
    rows = []
    for cid, params in enumerate(spec.candidates):
        folds = sorted(by_id.get(cid, []), key=lambda r: r["fold_id"])
        scores = [float(r["score"]) for r in folds]
        errors = [r["error"] for r in folds if r["error"]]
        if not errors and len(folds) != k:
            errors = [f"{len(folds)} of {k} folds evaluated"]
        elif not errors and not all(np.isfinite(scores)):
            errors = ["non-finite fold score"]
        complete = not errors
        rows.append({
            "candidate_id": cid,
            "params": dict(params),
            "fold_scores": scores,
            "mean": float(np.mean(scores)) if complete else math.nan,
            "sd": float(np.std(scores, ddof=1)) if complete and k > 1 else math.nan,
            "mean_fit_seconds": float(np.mean([r["fit_seconds"] for r in folds]))
            if folds else math.nan,
            "error": errors[0] if errors else None,
        })
    board = pd.DataFrame(rows)
    ok = board["mean"].notna()
    order = board[ok].sort_values(["mean", "candidate_id"], ascending=[False, True])
    board["rank"] = pd.Series(range(1, len(order) + 1), index=order.index, dtype="Int64")
    return board


def best_candidate(board: pd.DataFrame) -> int:
    """Id of the rank-1 candidate; raises with the errors when every candidate failed."""
    ranked = board[board["rank"] == 1]
    if ranked.empty:
        raise RuntimeError(f"every candidate failed: {board['error'].tolist()}")
    return int(ranked["candidate_id"].iloc[0])
