"""MLlib algorithm registry: name → estimator class and task; param grids; pipeline building.

Names are the pyspark.ml class names (`RandomForestClassifier`; case-insensitive). A candidate's
`params` are fixed, its `grid` (param → values) is expanded to every combination; unknown
algorithms or parameters raise `ValueError` naming them. `MultilayerPerceptronClassifier` takes
`hidden_layers: [16]` (input and output sizes are filled in from the data) instead of `layers`.
"""

from __future__ import annotations

import importlib
import itertools
import logging
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

log = logging.getLogger(__name__)
FEATURES_RAW, FEATURES, FEATURES_NB = "_ms_assembled", "_ms_features", "_ms_features_nn"
LABEL = "_ms_label"


@dataclass(frozen=True)
class Algorithm:
    """One MLlib estimator: where it lives, its task and its constraints."""

    name: str
    module: str
    task: str
    binary_only: bool = False
    non_negative: bool = False
    center: bool = True  # BisectingKMeans cannot split a cluster centred at the origin

    def cls(self) -> type:
        return getattr(importlib.import_module(self.module), self.name)


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

# metric -> (task, larger is better)
METRICS: dict[str, tuple[str, bool]] = {
    "accuracy": ("classification", True), "f1": ("classification", True),
    "roc_auc": ("classification", True), "pr_auc": ("classification", True),
    "rmse": ("regression", False), "mae": ("regression", False), "r2": ("regression", True),
    "silhouette": ("clustering", True),
}
PSEUDO_PARAMS = {"multilayerperceptronclassifier": {"hidden_layers"}}


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


def check_candidate(name: str, params: dict[str, Any], grid: dict[str, list[Any]]) -> None:
    """Raise ValueError for an unknown algorithm or parameter, or an empty grid list."""
    from pyspark.ml.param import Param

    algo = get_algorithm(name)
    cls = algo.cls()  # Params are class attributes: no SparkContext needed to check them
    allowed = PSEUDO_PARAMS.get(algo.name.lower(), set())
    for key in [*params, *grid]:
        if key in ("featuresCol", "labelCol", "predictionCol"):
            raise ValueError(f"{algo.name}: {key!r} is set by medspark")
        if key not in allowed and not isinstance(getattr(cls, key, None), Param):
            raise ValueError(f"{algo.name} has no parameter {key!r}")
    for key, values in grid.items():
        if not values:
            raise ValueError(f"{algo.name}: grid {key!r} is empty")


def param_grid(params: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid values, each merged over the fixed params (sorted keys)."""
    keys = sorted(grid)
    return [{**params, **dict(zip(keys, combo, strict=True))}
            for combo in itertools.product(*(grid[k] for k in keys))]


def make_estimator(name: str, params: dict[str, Any], *, n_features: int, n_classes: int,
                   seed: int, features_col: str = FEATURES):
    """The configured estimator reading `features_col` (and the `_ms_label` column)."""
    algo = get_algorithm(name)
    params = dict(params)
    hidden = params.pop("hidden_layers", None)
    if algo.name == "MultilayerPerceptronClassifier" and "layers" not in params:
        params["layers"] = [n_features, *(hidden or [max(2, n_features // 2)]), n_classes]
    est = algo.cls()(featuresCol=features_col, **params)
    if algo.task != "clustering":
        est.setLabelCol(LABEL)
    if est.hasParam("seed") and "seed" not in params:
        est.set(est.getParam("seed"), seed)
    return est


class ClipNonNegative(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable,
                      DefaultParamsWritable):
    """max(x, 0) per vector element: MinMaxScaler maps unseen rows outside [0, 1], and the
    multinomial NaiveBayes refuses negative values at prediction time too."""

    def __init__(self, inputCol: str | None = None, outputCol: str | None = None):
        super().__init__()
        self._set(**{k: v for k, v in {"inputCol": inputCol, "outputCol": outputCol}.items()
                     if v is not None})

    def _transform(self, dataset):
        from pyspark.ml.functions import array_to_vector, vector_to_array
        from pyspark.sql import functions as F

        values = vector_to_array(self.getInputCol())
        clipped = F.transform(values, lambda x: F.greatest(x, F.lit(0.0)))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(clipped))


def build_pipeline(name: str, params: dict[str, Any], feature_cols: list[str], *,
                   standardize: bool, n_classes: int, seed: int):
    """VectorAssembler → StandardScaler (optional; not centred for BisectingKMeans) →
    MinMaxScaler + clip at 0 (NaiveBayes) → estimator."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import MinMaxScaler, StandardScaler, VectorAssembler

    algo = get_algorithm(name)
    stages: list[Any] = [VectorAssembler(inputCols=list(feature_cols), outputCol=FEATURES_RAW)]
    col = FEATURES_RAW
    if standardize:
        stages.append(StandardScaler(inputCol=col, outputCol=FEATURES, withMean=algo.center,
                                     withStd=True))
        col = FEATURES
    if algo.non_negative:
        stages += [MinMaxScaler(inputCol=col, outputCol=FEATURES_NB + "_mm"),
                   ClipNonNegative(inputCol=FEATURES_NB + "_mm", outputCol=FEATURES_NB)]
        col = FEATURES_NB
    stages.append(make_estimator(name, params, n_features=len(feature_cols),
                                 n_classes=n_classes, seed=seed, features_col=col))
    return Pipeline(stages=stages)


def feature_weights(model, feature_cols: list[str]) -> tuple[str, list[float]] | None:
    """("importance" | "coefficient", one value per feature) of a fitted model, when it has one."""
    if hasattr(model, "featureImportances"):
        return "importance", model.featureImportances.toArray().tolist()
    try:
        coef = model.coefficients.toArray().tolist()
    except Exception:  # noqa: BLE001 - multinomial LogisticRegression has a matrix instead
        return None
    return ("coefficient", coef) if len(coef) == len(feature_cols) else None


def evaluate(pred, metric: str, features_col: str) -> float:
    """One MLlib evaluator metric on a fold's predictions (NaN when undefined). MLlib and
    scikit-learn candidates are both scored here, so their leaderboard rows compare."""
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator,
        ClusteringEvaluator,
        MulticlassClassificationEvaluator,
        RegressionEvaluator,
    )

    if metric in ("accuracy", "f1"):
        ev: Any = MulticlassClassificationEvaluator(labelCol=LABEL, metricName=metric)
    elif metric in ("roc_auc", "pr_auc"):
        ev = BinaryClassificationEvaluator(  # probability: NaiveBayes' raw[1] alone misranks
            labelCol=LABEL, metricName="areaUnderROC" if metric == "roc_auc" else "areaUnderPR",
            rawPredictionCol="probability" if "probability" in pred.columns else "rawPrediction")
    elif metric == "silhouette":
        ev = ClusteringEvaluator(featuresCol=features_col)
    else:
        ev = RegressionEvaluator(labelCol=LABEL, metricName=metric)
    try:
        return float(ev.evaluate(pred))
    except Exception as e:  # noqa: BLE001 - e.g. one cluster only: silhouette undefined
        log.warning("metric %s undefined: %s", metric, e)
        return float("nan")


def final_features_col(pipeline) -> str:
    """The column the (fitted) pipeline's last stage reads its features from."""
    return pipeline.getStages()[-1].getFeaturesCol()
