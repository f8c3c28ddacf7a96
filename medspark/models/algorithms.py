"""The candidates `medspark train` knows: MLlib algorithm names, selection metrics, grids.

Pure data and checks, no Spark: an MLlib name (`RandomForestClassifier`, case-insensitive) maps
to its `pyspark.ml` class path and task; a dotted import path is a scikit-learn estimator
(`medspark.models.sklearn_candidates`). `param_grid` is the one grid expander: a candidate's
fixed `params` merged under every combination of its `grid` values, for both kinds. The MLlib
wrappers that build and fit pipelines live in `medspark.spark.models.mllib_engine`.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass
from typing import Any

# MLlib sets these itself (the pipeline's columns)
RESERVED_PARAMS = ("featuresCol", "labelCol", "predictionCol")


@dataclass(frozen=True)
class Algorithm:
    """One MLlib estimator: where it lives, its task and its constraints."""

    name: str
    module: str
    task: str
    binary_only: bool = False
    non_negative: bool = False
    center: bool = True  # BisectingKMeans cannot split a cluster centred at the origin

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"


_C, _R, _K = "pyspark.ml.classification", "pyspark.ml.regression", "pyspark.ml.clustering"
ALGORITHMS: dict[str, Algorithm] = {a.name.lower(): a for a in (
    Algorithm("LogisticRegression", _C, "classification"),
    Algorithm("LinearSVC", _C, "classification", binary_only=True),
    Algorithm("DecisionTreeClassifier", _C, "classification"),
    Algorithm("RandomForestClassifier", _C, "classification"),
    Algorithm("GBTClassifier", _C, "classification", binary_only=True),
    Algorithm("MultilayerPerceptronClassifier", _C, "classification"),
    Algorithm("NaiveBayes", _C, "classification", non_negative=True),
    Algorithm("LinearRegression", _R, "regression"),
    Algorithm("DecisionTreeRegressor", _R, "regression"),
    Algorithm("RandomForestRegressor", _R, "regression"),
    Algorithm("GBTRegressor", _R, "regression"),
    Algorithm("KMeans", _K, "clustering"),
    Algorithm("BisectingKMeans", _K, "clustering", center=False),
    Algorithm("GaussianMixture", _K, "clustering"),
)}
PSEUDO_PARAMS = {"multilayerperceptronclassifier": {"hidden_layers"}}

# metric -> (task, larger is better)
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("classification", True), "f1": ("classification", True),
    "roc_auc": ("classification", True), "pr_auc": ("classification", True),
    "rmse": ("regression", False), "mae": ("regression", False), "r2": ("regression", True),
    "silhouette": ("clustering", True),
}


def is_estimator_path(name: str) -> bool:
    """True for a dotted import path (a scikit-learn estimator), False for an MLlib name."""
    return "." in name


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name.lower()]
    except KeyError:
        known = ", ".join(a.name for a in ALGORITHMS.values())
        raise ValueError(f"unknown algorithm {name!r}; known: {known}") from None


def check_metric(task: str, metric: str) -> None:
    if metric not in METRICS or METRICS[metric][0] != task:
        ok = [m for m, (t, _) in METRICS.items() if t == task]
        raise ValueError(f"metric {metric!r} is not a {task} metric; use one of {ok}")


def larger_is_better(metric: str) -> bool:
    return METRICS[metric][1]


def check_mllib_candidate(name: str, params: dict[str, Any],
                          grid: dict[str, list[Any]]) -> None:
    """Raise ValueError for an unknown algorithm or parameter, or an empty grid list.

    The parameters are checked against the `pyspark.ml` class's declared `Param`s (class
    attributes: imported by name, no SparkContext needed).
    """
    algo = get_algorithm(name)
    cls = getattr(importlib.import_module(algo.module), algo.name)
    allowed = PSEUDO_PARAMS.get(algo.name.lower(), set())
    for key in [*params, *grid]:
        if key in RESERVED_PARAMS:
            raise ValueError(f"{algo.name}: {key!r} is set by medspark")
        if key not in allowed and not _is_param(getattr(cls, key, None)):
            raise ValueError(f"{algo.name} has no parameter {key!r}")
    for key, values in grid.items():
        if not values:
            raise ValueError(f"{algo.name}: grid {key!r} is empty")


def _is_param(value: Any) -> bool:
    # pyspark.ml.param.Param, recognised by its shape (name, doc, typeConverter)
    return all(hasattr(value, a) for a in ("name", "doc", "typeConverter", "parent"))


def param_grid(params: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid values (keys sorted), each merged over the fixed params."""
    keys = sorted(grid)
    return [{**params, **dict(zip(keys, combo, strict=True))}
            for combo in itertools.product(*(grid[k] for k in keys))]
