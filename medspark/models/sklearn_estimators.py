"""scikit-learn estimators named by import path: resolution (checked parameters), pipelines.

Spark-free: `medspark train` calls these on the driver (validation) and inside Spark tasks
(fits). Only classes under `sklearn.` and `medspark.` can be named (a config file must not be
able to import arbitrary code).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

ALLOWED_PREFIXES = ("sklearn.", "medspark.")


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
def make_pipeline(path: str, params: Mapping[str, Any] | None = None, *, scale: bool = True,
                  seed: int | None = 0) -> Any:
    """Pipeline of [StandardScaler] + the estimator (step `model`); missing values are the
    saved imputer's business (`medspark.models.missing`), not the pipeline's.

    With `seed`, an estimator `random_state` left at None is set to it, so fits repeat.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    est = resolve_estimator(path, params)
    if seed is not None and "random_state" in est.get_params(deep=False) and (
        est.get_params(deep=False)["random_state"] is None
    ):
        est.set_params(random_state=seed)
    steps: list[tuple[str, Any]] = [("scale", StandardScaler())] if scale else []
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
