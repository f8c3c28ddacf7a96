"""Pure model pieces: selection scores against scikit-learn, MLlib -> scikit-learn counterparts,
JSON helpers, model files on other filesystems, and `medspark.models` staying Spark-free."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from medspark.jsonable import canonical_json, finite, num, py, short_hash
from medspark.models import scores
from medspark.models.counterparts import NoCounterpart, sklearn_counterpart, sklearn_params

MODELS = Path(__file__).resolve().parents[1] / "medspark" / "models"


# ------------------------------------------------------------------------------- scores
@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = np.clip(0.3 * y + rng.normal(0.35, 0.2, 2000), 0, 1)
    return y, np.column_stack([1 - s, s])


def score(metric, y, pred, prob=None, x=None, n_classes=2):
    stats = scores.fold_stats(metric, y, pred, prob, x, n_classes)
    return scores.score_from_stats(metric, stats)


def test_classification_scores_equal_sklearn(binary):
    y, prob = binary
    pred = (prob[:, 1] >= 0.5).astype(float)
    assert score("accuracy", y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    multi = np.random.default_rng(1).integers(0, 3, 500)
    guess = np.where(np.random.default_rng(2).random(500) < 0.6, multi, 0)
    assert score("f1", multi, guess, n_classes=3) == pytest.approx(
        skm.f1_score(multi, guess, average="weighted"), abs=1e-12)
    # binned ROC AUC / average precision: within 1e-3 of the exact values for spread scores
    assert abs(score("roc_auc", y, pred, prob) - skm.roc_auc_score(y, prob[:, 1])) < 1e-3
    assert abs(score("pr_auc", y, pred, prob)
               - skm.average_precision_score(y, prob[:, 1])) < 1e-3
    # exact when the scores lie on the bins (ties handled as scikit-learn does)
    grid = np.round(prob[:, 1] * 20) / 20
    on_bins = np.column_stack([1 - grid, grid])
    assert score("roc_auc", y, pred, on_bins) == pytest.approx(skm.roc_auc_score(y, grid),
                                                               abs=1e-12)
    assert score("pr_auc", y, pred, on_bins) == pytest.approx(
        skm.average_precision_score(y, grid), abs=1e-12)
    assert math.isnan(score("roc_auc", np.ones(5), np.ones(5), on_bins[:5]))


def test_regression_and_silhouette_scores():
    rng = np.random.default_rng(3)
    y = rng.normal(size=300)
    p = y + rng.normal(scale=0.3, size=300)
    assert score("rmse", y, p) == pytest.approx(skm.root_mean_squared_error(y, p), rel=1e-12)
    assert score("mae", y, p) == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert score("r2", y, p) == pytest.approx(skm.r2_score(y, p), rel=1e-9)
    assert math.isnan(score("r2", np.ones(4), np.arange(4.0)))
    # squared-Euclidean silhouette from cluster sums == the pairwise definition
    x = np.vstack([rng.normal(c, 0.5, size=(40, 3)) for c in (0, 3, 6)])
    labels = np.repeat([0, 1, 2], 40)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    a = np.array([d[i, labels == labels[i]].sum() / (np.sum(labels == labels[i]) - 1)
                  for i in range(len(x))])
    b = np.array([min(d[i, labels == c].mean() for c in set(labels) - {labels[i]})
                  for i in range(len(x))])
    assert score("silhouette", None, labels, x=x) == pytest.approx(
        np.mean((b - a) / np.maximum(a, b)), rel=1e-9)
    assert math.isnan(scores.silhouette_squared(x, np.zeros(len(x))))


# ---------------------------------------------------------------------------- counterparts
def test_mllib_counterparts_translate_the_objective():
    path, params = sklearn_params("RandomForestClassifier", {"maxDepth": 8, "seed": 3}, 100)
    assert path == "sklearn.ensemble.RandomForestClassifier"
    assert params == {"n_estimators": 20, "max_depth": 8, "max_features": "sqrt",
                      "random_state": 3}  # MLlib's defaults made explicit
    _, reg = sklearn_params("RandomForestRegressor", {"featureSubsetStrategy": "all"}, 10)
    assert reg["max_features"] is None
    _, lr = sklearn_params("LogisticRegression", {"regParam": 0.01}, 500)
    assert lr["C"] == pytest.approx(1 / (500 * 0.01)) and lr["l1_ratio"] == 0.0
    _, unpenalised = sklearn_params("LogisticRegression", {}, 500)
    assert unpenalised["C"] == math.inf
    assert sklearn_params("LinearRegression", {"regParam": 0.1}, 50) == (
        "sklearn.linear_model.Ridge", {"alpha": pytest.approx(5.0)})
    assert sklearn_params("LinearRegression", {"regParam": 0.1, "elasticNetParam": 0.5}, 50)[0] \
        == "sklearn.linear_model.ElasticNet"
    assert sklearn_params("KMeans", {"k": 4}, 9)[1] == {"n_clusters": 4, "max_iter": 20,
                                                        "tol": 1e-4, "n_init": 1}
    # no counterpart: the candidate stays on MLlib, with the reason
    assert sklearn_counterpart("RandomForestClassifier", {"thresholds": [0.4, 0.6]})[0] is None
    assert "regParam 0" in sklearn_counterpart("LinearSVC", {})[1]
    with pytest.raises(NoCounterpart):
        sklearn_params("NaiveBayes", {}, 10)
    assert sklearn_counterpart("GBTClassifier", {"maxIter": 5})[0] == \
        "sklearn.ensemble.GradientBoostingClassifier"


def test_ridge_counterpart_minimises_the_mllib_objective():
    """(1/2n)|y - Xw|^2 + lam/2 |w|^2 (MLlib) and Ridge(alpha = n lam) share the minimiser."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(4)
    x, n, lam = rng.normal(size=(80, 3)), 80, 0.2
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=80)
    xc, yc = x - x.mean(0), y - y.mean()
    closed = np.linalg.solve(xc.T @ xc / n + lam * np.eye(3), xc.T @ yc / n)
    _, params = sklearn_params("LinearRegression", {"regParam": lam}, n)
    np.testing.assert_allclose(Ridge(**params).fit(x, y).coef_, closed, rtol=1e-10)


# --------------------------------------------------------------------------------- json
def test_json_helpers():
    assert py(np.int64(3)) == 3 and type(py(np.float32(1.5))) is float
    assert num(float("nan")) is None and num(np.inf) is None and num(2) == 2.0
    assert finite({"a": [1.0, float("nan")], "b": np.float64(np.inf)}) == \
        {"a": [1.0, None], "b": None}
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert short_hash({"a": 1, "b": 2}) == short_hash({"b": 2, "a": 1})
    assert len(short_hash({}, 8)) == 8


# ------------------------------------------------------------------------------ filesystems
def test_imputer_saved_to_and_loaded_from_other_filesystems(tmp_path):
    import pyarrow.fs as pafs

    from medspark.models.missing import FittedImputer, MissingValuePlan

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    frame.iloc[::7, 1] = np.nan
    plan = MissingValuePlan.from_config({"rules": [
        {"strategy": "model", "columns": ["b"], "estimator": "bayesian_ridge"},
        {"strategy": "fill", "columns": ["*"], "method": "median"}]})
    fitted = plan.fit(frame)
    expected = fitted.transform(frame).frame
    filesystems = [pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())]
    fsspec = pytest.importorskip("fsspec")
    filesystems.append(pafs.PyFileSystem(pafs.FSSpecHandler(
        fsspec.filesystem("memory"))))
    for fs in filesystems:
        folder = fitted.save("models/m1/imputer", filesystem=fs)
        assert folder.exists("imputer.json") and folder.exists("step_0.pkl")
        again = FittedImputer.load("models/m1/imputer", filesystem=fs)
        pd.testing.assert_frame_equal(again.transform(frame).frame, expected)
    local = fitted.save(f"file://{tmp_path}/uri/imputer")  # a file:// URI
    assert local.path == str(tmp_path / "uri" / "imputer") and local.exists("imputer.json")


# ------------------------------------------------------------------------------ purity
def test_models_package_is_spark_free_and_acyclic():
    """No module of medspark.models imports pyspark; importing them all loads no pyspark;
    the imputer steps do not import the plan that strings them together."""
    for path in sorted(MODELS.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "pyspark"], path.name
        if path.name == "impute_steps.py":
            assert "medspark.models.missing" not in names
    modules = [f"medspark.models.{p.stem}" for p in MODELS.glob("*.py") if p.stem != "__init__"]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyspark'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"
