"""MLlib algorithms' scikit-learn counterparts, for `train.engine: auto`.

Where the training split fits a Spark task, `medspark train` with `engine: auto` fits an MLlib
candidate as its scikit-learn counterpart in parallel Spark tasks (much faster on data of that
size) and leaves it to MLlib otherwise. The parameters are translated so both optimise the same
thing: MLlib's defaults are set explicitly (a forest has 20 trees of depth 5 in both), and the
regularised linear models' `regParam` (lambda, on the mean loss) becomes scikit-learn's `C = 1 /
(n lambda)` (on the summed loss) or `alpha` for the row count `n` of each fit. A parameter with
no counterpart (e.g. MLlib's `thresholds`, `minInfoGain`) keeps the candidate on MLlib, and the
leaderboard says why. MLlib's tree binning (`maxBins`) and memory settings have no counterpart
and no effect on what is optimised: they are dropped.

    sklearn_counterpart("RandomForestClassifier", {"numTrees": 30}) -> (path, None)
    sklearn_params("RandomForestClassifier", {"numTrees": 30}, n_rows=5000)
        -> ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 30, "max_depth": 5, ...})
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# MLlib settings about how (not what) it computes: no counterpart needed
ENGINE_ONLY = {"maxBins", "maxMemoryInMB", "cacheNodeIds", "checkpointInterval", "blockSize",
               "aggregationDepth", "maxBlockSizeInMB", "leafCol", "probabilityCol",
               "rawPredictionCol", "solver", "distanceMeasure"}
Translator = Callable[[dict[str, Any], int], dict[str, Any]]


class NoCounterpart(ValueError):
    """The candidate cannot be expressed as a scikit-learn estimator: it stays on MLlib."""


def _take(params: dict[str, Any], mapping: dict[str, str], defaults: dict[str, Any],
          convert: dict[str, Callable[[Any], Any]] | None = None) -> dict[str, Any]:
    """MLlib params renamed by `mapping` over MLlib's `defaults`; NoCounterpart for others."""
    unknown = sorted(set(params) - set(mapping) - ENGINE_ONLY - {"seed"})
    if unknown:
        raise NoCounterpart(f"no scikit-learn counterpart for {unknown}")
    out = {mapping[k]: v for k, v in {**defaults, **params}.items() if k in mapping}
    for key, fn in (convert or {}).items():
        if key in out:
            out[key] = fn(out[key])
    if "seed" in params:
        out["random_state"] = int(params["seed"]) % (2**32)
    return out


def _max_features(value: Any, task: str) -> Any:
    named = {"auto": "sqrt" if task == "classification" else 1 / 3, "sqrt": "sqrt",
             "log2": "log2", "all": None, "onethird": 1 / 3}
    if str(value) in named:
        return named[str(value)]
    number = float(value)
    if number > 1 or str(value).isdigit():
        return int(number)
    return number


def _criterion(value: str) -> str:
    return {"gini": "gini", "entropy": "entropy", "variance": "squared_error"}[value]


TREE = {"maxDepth": "max_depth", "minInstancesPerNode": "min_samples_leaf",
        "minWeightFractionPerNode": "min_weight_fraction_leaf", "impurity": "criterion"}


def _forest(task: str) -> Translator:
    def translate(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
        del n_rows
        out = _take(params, {**TREE, "numTrees": "n_estimators",
                             "featureSubsetStrategy": "max_features",
                             "subsamplingRate": "max_samples", "bootstrap": "bootstrap"},
                    {"numTrees": 20, "maxDepth": 5, "featureSubsetStrategy": "auto"},
                    {"criterion": _criterion,
                     "max_features": lambda v: _max_features(v, task),
                     "max_samples": lambda v: None if float(v) >= 1 else float(v)})
        return out
    return translate


def _tree(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    del n_rows
    return _take(params, TREE, {"maxDepth": 5}, {"criterion": _criterion})


def _gbt(task: str) -> Translator:
    losses = {"logistic": "log_loss", "squared": "squared_error", "absolute": "absolute_error"}

    def translate(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
        del n_rows
        return _take(params, {"maxDepth": "max_depth", "minInstancesPerNode": "min_samples_leaf",
                              "maxIter": "n_estimators", "stepSize": "learning_rate",
                              "subsamplingRate": "subsample", "lossType": "loss",
                              "featureSubsetStrategy": "max_features"},
                     {"maxIter": 20, "maxDepth": 5, "stepSize": 0.1},
                     {"loss": losses.__getitem__,
                      "max_features": lambda v: _max_features(v, task) if v != "auto" else None})
    return translate


def _inverse_c(lam: float, n_rows: int) -> float:
    """scikit-learn's C for MLlib's regParam: (1/n) sum(loss) + lam R(w) == (C sum(loss) +
    R(w)) / (C n), so C = 1 / (n lam); no penalty (lam = 0) is C = inf."""
    return math.inf if lam == 0 else 1.0 / (max(n_rows, 1) * lam)


def _logistic(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    out = _take(params, {"maxIter": "max_iter", "tol": "tol", "fitIntercept": "fit_intercept",
                         "regParam": "_lam", "elasticNetParam": "l1_ratio",
                         "standardization": "_std", "family": "_family"},
                {"maxIter": 100, "tol": 1e-6, "regParam": 0.0, "elasticNetParam": 0.0})
    out.pop("_std", None)
    out.pop("_family", None)
    out["C"] = _inverse_c(float(out.pop("_lam")), n_rows)
    if out["l1_ratio"] > 0:
        out["solver"] = "saga"
    return out


def _svc(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    out = _take(params, {"maxIter": "max_iter", "tol": "tol", "fitIntercept": "fit_intercept",
                         "regParam": "_lam", "standardization": "_std"},
                {"maxIter": 100, "tol": 1e-6, "regParam": 0.0})
    out.pop("_std", None)
    lam = float(out.pop("_lam"))
    if lam == 0:
        raise NoCounterpart("regParam 0 (an unregularised hinge loss) has no LinearSVC "
                            "counterpart")
    return {**out, "C": _inverse_c(lam, n_rows), "loss": "hinge", "dual": True}


def _linear(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    out = _take(params, {"fitIntercept": "fit_intercept", "regParam": "_lam",
                         "elasticNetParam": "_alpha", "maxIter": "_iter", "tol": "_tol",
                         "standardization": "_std", "loss": "_loss"},
                {"regParam": 0.0, "elasticNetParam": 0.0})
    if out.pop("_loss", "squaredError") != "squaredError":
        raise NoCounterpart("loss huber has no counterpart here")
    lam, alpha = float(out.pop("_lam")), float(out.pop("_alpha"))
    for key in ("_iter", "_tol", "_std"):
        out.pop(key, None)
    if lam == 0:
        return {"_path": "sklearn.linear_model.LinearRegression", **out}
    if alpha == 0:  # (1/2n)|y - Xw|^2 + lam/2 |w|^2  ==  (|y - Xw|^2 + n lam |w|^2) / 2n
        return {"_path": "sklearn.linear_model.Ridge", **out, "alpha": max(n_rows, 1) * lam}
    return {"_path": "sklearn.linear_model.ElasticNet", **out, "alpha": lam,
            "l1_ratio": alpha}


def _kmeans(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    del n_rows
    out = _take(params, {"k": "n_clusters", "maxIter": "max_iter", "tol": "tol",
                         "initMode": "_init", "initSteps": "_steps"},
                {"k": 2, "maxIter": 20, "tol": 1e-4})
    out.pop("_init", None)
    out.pop("_steps", None)
    return {**out, "n_init": 1}


def _bisecting(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    del n_rows
    return _take(params, {"k": "n_clusters", "maxIter": "max_iter"}, {"k": 4, "maxIter": 20})


def _mixture(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    del n_rows
    return _take(params, {"k": "n_components", "maxIter": "max_iter", "tol": "tol"},
                 {"k": 2, "maxIter": 100, "tol": 0.01})


def _mlp(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    del n_rows
    out = _take(params, {"hidden_layers": "hidden_layer_sizes", "maxIter": "max_iter",
                         "tol": "tol"}, {"maxIter": 100, "tol": 1e-6})
    if "hidden_layer_sizes" not in out:
        raise NoCounterpart("set hidden_layers (the MLlib default depends on the features)")
    out["hidden_layer_sizes"] = tuple(int(v) for v in out["hidden_layer_sizes"])
    return {**out, "activation": "logistic", "solver": "lbfgs"}


COUNTERPARTS: dict[str, tuple[str, Translator]] = {
    "randomforestclassifier": ("sklearn.ensemble.RandomForestClassifier",
                               _forest("classification")),
    "randomforestregressor": ("sklearn.ensemble.RandomForestRegressor", _forest("regression")),
    "decisiontreeclassifier": ("sklearn.tree.DecisionTreeClassifier", _tree),
    "decisiontreeregressor": ("sklearn.tree.DecisionTreeRegressor", _tree),
    "gbtclassifier": ("sklearn.ensemble.GradientBoostingClassifier", _gbt("classification")),
    "gbtregressor": ("sklearn.ensemble.GradientBoostingRegressor", _gbt("regression")),
    "logisticregression": ("sklearn.linear_model.LogisticRegression", _logistic),
    "linearsvc": ("sklearn.svm.LinearSVC", _svc),
    "linearregression": ("sklearn.linear_model.LinearRegression", _linear),
    "kmeans": ("sklearn.cluster.KMeans", _kmeans),
    "bisectingkmeans": ("sklearn.cluster.BisectingKMeans", _bisecting),
    "gaussianmixture": ("sklearn.mixture.GaussianMixture", _mixture),
    "multilayerperceptronclassifier": ("sklearn.neural_network.MLPClassifier", _mlp),
}


def sklearn_params(algorithm: str, params: dict[str, Any], n_rows: int
                   ) -> tuple[str, dict[str, Any]]:
    """(import path, parameters) of the MLlib candidate's scikit-learn counterpart for a fit
    on `n_rows` rows; NoCounterpart when there is none."""
    entry = COUNTERPARTS.get(algorithm.lower())
    if entry is None:
        raise NoCounterpart(f"{algorithm} has no scikit-learn counterpart here")
    path, translate = entry
    out = translate(dict(params), n_rows)
    return out.pop("_path", path), out


def sklearn_counterpart(algorithm: str, params: dict[str, Any]) -> tuple[str | None, str | None]:
    """(import path, None) when the candidate translates, else (None, why not)."""
    try:
        path, translated = sklearn_params(algorithm, params, n_rows=1000)
        from medspark.models.sklearn_estimators import resolve_estimator

        resolve_estimator(path, translated)
    except (NoCounterpart, ValueError, KeyError) as e:
        return None, str(e)
    return path, None
