"""The Spark train job: WDBC reference accuracies, every MLlib algorithm, leakage, determinism."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from medspark.config import ConfigError, Settings
from medspark.models.config import TrainSettings
from medspark.spark.train import run_train

REFERENCE = ("RandomForestClassifier", "LogisticRegression", "LinearSVC")
CLASSIFIERS = ("LogisticRegression", "LinearSVC", "DecisionTreeClassifier",
               "RandomForestClassifier", "GBTClassifier", "MultilayerPerceptronClassifier",
               "NaiveBayes")
REGRESSORS = ("LinearRegression", "DecisionTreeRegressor", "RandomForestRegressor",
              "GBTRegressor")
CLUSTERERS = ("KMeans", "BisectingKMeans", "GaussianMixture")
SMALL = {"RandomForestClassifier": {"numTrees": 20},
         "RandomForestRegressor": {"numTrees": 10},
         "GBTClassifier": {"maxIter": 5}, "GBTRegressor": {"maxIter": 5},
         "LogisticRegression": {"maxIter": 15, "regParam": 0.01},
         "LinearSVC": {"maxIter": 15, "regParam": 0.01},
         "MultilayerPerceptronClassifier": {"maxIter": 30, "hidden_layers": [4]},
         "LinearRegression": {"maxIter": 20}, "KMeans": {"k": 2, "maxIter": 10},
         "BisectingKMeans": {"k": 2, "maxIter": 10}, "GaussianMixture": {"k": 2, "maxIter": 10}}


def candidates(names) -> list[dict]:
    return [{"algorithm": n, "params": SMALL.get(n, {})} for n in names]


def config(**kw) -> TrainSettings:
    """MLlib candidates on the MLlib engine (`engine: auto` would fit their scikit-learn
    counterparts on tables this small)."""
    doc = {"label": "target", "id_col": "row_id", "group_col": "patient_id", "n_boot": 100,
           "engine": "mllib", **kw}
    return TrainSettings.model_validate(doc)


def model_dir(lake, manifest) -> str:
    return os.path.join(lake, "models", manifest["model_id"])


def read_json(path) -> dict:
    with open(path) as fh:
        return json.load(fh)


# --------------------------------------------------------------------------------- WDBC
@pytest.fixture(scope="module")
def wdbc(tmp_path_factory, wdbc_frame):
    """sklearn's breast cancer table (569 × 30) as Parquet, complete and with 20% removed."""
    root = tmp_path_factory.mktemp("wdbc")
    frame = wdbc_frame
    x = frame.drop(columns=["row_id", "patient_id", "target"])
    holes = np.random.default_rng(0).random(x.shape) < 0.2
    frame.to_parquet(root / "complete.parquet", index=False)
    frame.assign(**x.mask(holes)).to_parquet(root / "missing.parquet", index=False)
    return {"root": root, "complete": str(root / "complete.parquet"),
            "missing": str(root / "missing.parquet"), "holes": float(holes.mean())}


@pytest.fixture(scope="module")
def wdbc_runs(spark, wdbc):
    from concurrent.futures import ThreadPoolExecutor

    lake = str(wdbc["root"] / "lake")
    cands = [{"algorithm": "RandomForestClassifier", "params": {"numTrees": 50, "maxDepth": 8}},
             *candidates(["LogisticRegression", "LinearSVC"])]
    cfg = config(selection={"folds": 3, "candidates": cands})
    iterative = cfg.model_copy(update={"missing": {"rules": [
        {"strategy": "model", "columns": ["*"], "estimator": "iterative"}]}})
    with ThreadPoolExecutor(2) as pool:  # two concurrent Spark jobs: the CI budget
        runs = {name: pool.submit(run_train, spark, Settings(), lake, table=wdbc[name],
                                  train=c)
                for name, c in (("complete", cfg), ("missing", iterative))}
        return lake, {name: run.result() for name, run in runs.items()}


def cv_accuracy(lake, manifest) -> dict[str, float]:
    board = pd.read_parquet(os.path.join(model_dir(lake, manifest), "leaderboard.parquet"))
    assert (board["metric"] == "accuracy").all() and (board["n_folds"] == 3).all()
    return dict(zip(board["algorithm"], board["mean"], strict=True))


def test_wdbc_reference_accuracy(wdbc_runs):
    lake, runs = wdbc_runs
    acc = cv_accuracy(lake, runs["complete"])
    print("WDBC complete, 3-fold grouped CV accuracy:", acc)
    assert set(acc) == set(REFERENCE)
    # folds are assigned by a hash of the patient id: MLlib's forest scores ~0.95 on them
    assert all(v >= 0.94 for v in acc.values()) and max(acc.values()) >= 0.96, acc
    assert runs["complete"]["test_metrics"]["accuracy"] >= 0.93


def test_wdbc_with_20_percent_missing(wdbc, wdbc_runs):
    lake, runs = wdbc_runs
    acc = cv_accuracy(lake, runs["missing"])
    print("WDBC 20% missing + iterative imputation, 3-fold grouped CV accuracy:", acc)
    assert abs(wdbc["holes"] - 0.2) < 0.01
    assert all(v >= 0.93 for v in acc.values()), acc
    metrics = read_json(os.path.join(model_dir(lake, runs["missing"]), "metrics.json"))
    for side in ("train", "test"):
        report = metrics["missing"][side]
        before = sum(c["missing_before"] for c in report["columns"].values())
        after = sum(c["missing_after"] or 0 for c in report["columns"].values())
        assert before > 0.15 * report["rows_in"] * 30 and after == 0
    assert metrics["counts"]["train_rows_rejected"] == 0


def test_model_folder(spark, wdbc_runs):
    from pyspark.ml import PipelineModel

    from medspark.models.missing import FittedImputer

    lake, runs = wdbc_runs
    manifest = runs["complete"]
    out = model_dir(lake, manifest)
    names = set(os.listdir(out))
    assert {"pipeline", "imputer", "metrics.json", "leaderboard.parquet", "metadata.json",
            "roc.png", "pr.png", "calibration.png", "confusion.png"} <= names
    assert any(n.startswith("feature_") and n.endswith(".png") for n in names)
    meta = read_json(os.path.join(out, "metadata.json"))
    assert meta["task"] == "classification" and meta["label_col"] == "target"
    assert meta["group_col"] == "patient_id" and meta["seed"] == 0
    assert len(meta["features"]) == 30 and meta["labels"] == [0, 1]
    assert meta["snapshot"]["counts"]["rows"] == 569
    assert sum(meta["snapshot"]["label_balance"]["train"].values()) == \
        meta["snapshot"]["counts"]["train_rows"]
    assert meta["versions"]["pyspark"] and meta["config_hash"]
    assert meta["model_id"].startswith(meta["algorithm"].lower())
    stages = PipelineModel.load(os.path.join(out, "pipeline")).stages
    assert type(stages[0]).__name__ == "VectorAssembler"
    assert type(stages[1]).__name__ == "StandardScalerModel"
    assert FittedImputer.load(os.path.join(out, "imputer")).train_report.rows_in == \
        meta["snapshot"]["counts"]["train_rows"]
    metrics = read_json(os.path.join(out, "metrics.json"))
    acc = metrics["test"]["accuracy"]
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"] and acc["n_boot_used"] == 100
    run = read_json(manifest["manifest_path"])
    assert run["job"] == "train" and run["model_id"] == manifest["model_id"]


# ---------------------------------------------------------------------- small synthetic
def synthetic(root, n_patients: int = 30, rows: int = 3, seed: int = 0, classes: int = 2):
    """Patients with a few rows each; label from the first two features; f3, f4 shifted by
    class (two clear clusters)."""
    rng = np.random.default_rng(seed)
    n = n_patients * rows
    x = rng.normal(size=(n, 5))
    patient = np.repeat(np.arange(n_patients), rows)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) if classes == 2 else \
        np.digitize(x[:, 0] + x[:, 1], [-0.7, 0.7])
    x[:, 3:] += 4.0 * y[:, None]
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).assign(
        row_id=np.arange(n), patient_id=[f"p{p:03d}" for p in patient], target=y,
        value=x[:, 0] * 2 + x[:, 2] + rng.normal(scale=0.1, size=n))
    path = os.path.join(root, f"synthetic_{classes}.parquet")
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    return {"root": str(root), "binary": synthetic(root), "three": synthetic(root, classes=3)}


@pytest.mark.parametrize("task,names", [("classification", CLASSIFIERS),
                                        ("regression", REGRESSORS),
                                        ("clustering", CLUSTERERS)])
def test_every_algorithm_trains(spark, small, task, names):
    label = "value" if task == "regression" else "target"
    metric = {"classification": "roc_auc", "regression": "rmse"}.get(task, "silhouette")
    cfg = config(task=task, label=label, n_boot=20, features=["f*"],
                 selection={"folds": 2, "metric": metric, "candidates": candidates(names)})
    lake = os.path.join(small["root"], "lake")
    manifest = run_train(spark, Settings(), lake, table=small["binary"], train=cfg)
    board = pd.read_parquet(os.path.join(model_dir(lake, manifest), "leaderboard.parquet"))
    assert sorted(board["algorithm"]) == sorted(names)
    assert np.isfinite(board["mean"]).all(), board
    assert board["rank"].tolist() == list(range(1, len(names) + 1))
    test = manifest["test_metrics"]
    if task == "classification":
        assert board["mean"].iloc[0] > 0.8 and test["roc_auc"] > 0.7
    elif task == "regression":
        assert test["r2"] > 0.5
    else:
        assert test["n_clusters"] == 2 and test["silhouette"] is not None


def test_multiclass(spark, small):
    cfg = config(n_boot=20, features=["f*"], selection={"folds": 2, "candidates": candidates(
        ["DecisionTreeClassifier", "LogisticRegression"])})
    lake = os.path.join(small["root"], "lake")
    manifest = run_train(spark, Settings(), lake, table=small["three"], train=cfg)
    metrics = read_json(os.path.join(model_dir(lake, manifest), "metrics.json"))
    assert len(metrics["test"]["confusion_matrix"]["value"]) == 3
    assert metrics["test"]["accuracy"]["value"] > 0.5
    with pytest.raises(ConfigError, match="binary only"):
        run_train(spark, Settings(), lake, table=small["three"], train=config(
            selection={"candidates": candidates(["GBTClassifier"])}))


def test_same_config_data_seed_same_metrics(spark, small):
    # engine auto: the forest is fitted as its scikit-learn counterpart (seeded too)
    cfg = config(n_boot=50, features=["f*"], engine="auto", selection={"folds": 2, "candidates": [
        {"algorithm": "RandomForestClassifier", "params": {"numTrees": 5, "maxDepth": 3}}]})
    lake = os.path.join(small["root"], "lake_det")
    first = run_train(spark, Settings(), lake, table=small["binary"], train=cfg)
    with open(os.path.join(model_dir(lake, first), "metrics.json")) as fh:
        before = json.load(fh)
    board_before = pd.read_parquet(os.path.join(model_dir(lake, first), "leaderboard.parquet"))
    again = run_train(spark, Settings(), lake, table=small["binary"], train=cfg)
    assert again["model_id"] == first["model_id"] and again["run_id"] != first["run_id"]
    after = read_json(os.path.join(model_dir(lake, again), "metrics.json"))
    assert after == before
    pd.testing.assert_frame_equal(
        pd.read_parquet(os.path.join(model_dir(lake, again), "leaderboard.parquet")),
        board_before)


def test_patient_label_does_not_leak(spark, tmp_path):
    """Label = a property of the patient, features = a patient noise signature: grouped CV and
    the grouped test split score chance; a row-level split (group = row) recognises patients."""
    rng = np.random.default_rng(0)
    n_patients, rows = 120, 5
    signature = rng.normal(size=(n_patients, 8))
    patient = np.repeat(np.arange(n_patients), rows)
    x = signature[patient] + rng.normal(scale=0.05, size=(n_patients * rows, 8))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)]).assign(
        row_id=np.arange(len(x)), patient_id=patient,
        target=rng.integers(0, 2, n_patients)[patient])
    path = str(tmp_path / "leak.parquet")
    frame.to_parquet(path, index=False)
    # engine auto (scikit-learn counterpart): the split, not the engine, is under test here
    cfg = config(n_boot=20, engine="auto", selection={"folds": 3, "metric": "roc_auc",
                                                      "candidates": [
        {"algorithm": "RandomForestClassifier", "params": {"numTrees": 20}}]})
    grouped = run_train(spark, Settings(), str(tmp_path / "lake"), table=path, train=cfg)
    print("leakage: grouped CV AUC", grouped["best"]["cv_mean"], "test AUC",
          grouped["test_metrics"]["roc_auc"])
    assert 0.3 <= grouped["best"]["cv_mean"] <= 0.7
    assert 0.3 <= grouped["test_metrics"]["roc_auc"] <= 0.7
    rowwise = run_train(spark, Settings(), str(tmp_path / "lake"), table=path,
                        train=cfg.model_copy(update={"group_col": "row_id"}))
    print("leakage: row-level CV AUC", rowwise["best"]["cv_mean"])
    assert rowwise["best"]["cv_mean"] > 0.9


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("doc,message", [
    ({"selection": {"candidates": [{"algorithm": "XGBoost"}]}}, "unknown algorithm"),
    ({"selection": {"candidates": [{"algorithm": "LogisticRegression",
                                    "params": {"trees": 3}}]}}, "no parameter 'trees'"),
    ({"selection": {"candidates": [{"algorithm": "KMeans"}]}}, "clustering algorithm"),
    ({"selection": {"metric": "rmse"}}, "not a classification metric"),
    ({"selection": {"candidates": [{"algorithm": "NaiveBayes", "grid": {"smoothing": []}}]}},
     "empty"),
    ({"missing": {"rules": [{"strategy": "fill", "columns": ["*"], "method": "avg"}]}},
     "method"),
    ({"aggregate": "series_min"}, "aggregate"),
])
def test_config_is_validated(doc, message):
    with pytest.raises(ValidationError, match=message):
        TrainSettings.model_validate(doc)


def test_param_grid_expands_every_combination():
    from medspark.models.algorithms import param_grid

    grid = param_grid({"numTrees": 5}, {"maxDepth": [2, 3], "minInstancesPerNode": [1, 2, 4]})
    assert len(grid) == 6 and all(g["numTrees"] == 5 for g in grid)
    assert {(g["maxDepth"], g["minInstancesPerNode"]) for g in grid} == \
        {(d, m) for d in (2, 3) for m in (1, 2, 4)}


def test_missing_column_named(spark, small):
    with pytest.raises(ConfigError, match="nope"):
        run_train(spark, Settings(), os.path.join(small["root"], "lake"),
                  table=small["binary"], train=config(group_col="nope"))
