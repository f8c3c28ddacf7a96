"""scikit-learn candidates in `medspark train` / `medspark predict` on real data (WDBC).

One mixed selection (an MLlib tree, a scikit-learn LogisticRegression grid, a candidate that
fails in fit) on sklearn's breast cancer table: the leaderboard holds both kinds, the
scikit-learn fold scores are recomputed here from the same grouped folds, the scikit-learn
winner is saved, and `medspark predict` in a fresh process scores like the in-process job.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
from lake_io import read
from pydantic import ValidationError

from medspark.config import ConfigError, Settings
from medspark.models.config import TrainSettings
from medspark.spark.predict import run_predict
from medspark.spark.train import run_train

LR = "sklearn.linear_model.LogisticRegression"
CANDIDATES = [
    {"algorithm": "DecisionTreeClassifier", "params": {"maxDepth": 2}},
    {"algorithm": LR, "grid": {"C": [0.1, 1.0]}},
    {"algorithm": LR, "params": {"l1_ratio": 1.0, "solver": "lbfgs"}},  # fails in fit
]


def config(**kw) -> TrainSettings:
    """The MLlib tree stays on MLlib (`engine: mllib`), so one leaderboard holds both kinds."""
    doc = {"label": "target", "id_col": "row_id", "group_col": "patient_id", "n_boot": 50,
           "engine": "mllib", "selection": {"folds": 3, "candidates": CANDIDATES}, **kw}
    return TrainSettings.model_validate(doc)


def read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def wdbc(tmp_path_factory, wdbc_frame) -> dict:
    """The WDBC table (one tumour per patient) as Parquet."""
    root = tmp_path_factory.mktemp("wdbc_sklearn")
    path = str(root / "wdbc.parquet")
    wdbc_frame.to_parquet(path, index=False)
    return {"lake": str(root / "lake"), "table": path, "frame": wdbc_frame,
            "features": [c for c in wdbc_frame.columns
                         if c not in ("row_id", "patient_id", "target")]}


@pytest.fixture(scope="module")
def mixed(spark, wdbc) -> dict:
    from medspark.spark.models.tasks import JOB_GROUP

    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(JOB_GROUP))
    manifest = run_train(spark, Settings(), wdbc["lake"], table=wdbc["table"], train=config())
    jobs = set(tracker.getJobIdsForGroup(JOB_GROUP)) - before
    tasks = [tracker.getStageInfo(s).numTasks for j in jobs
             for s in tracker.getJobInfo(j).stageIds if tracker.getStageInfo(s)]
    out = manifest["outputs"]["model"]
    return {"manifest": manifest, "out": out, "search_stage_tasks": tasks,
            "board": pd.read_parquet(os.path.join(out, "leaderboard.parquet"))}


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("candidate,task,message", [
    ({"algorithm": "sklearn.ensemble.HistGradientBoostingClassifer"}, "classification",
     "did you mean sklearn.ensemble.HistGradientBoostingClassifier"),
    ({"algorithm": "os.path.join"}, "classification", "must start with"),
    ({"algorithm": "sklearn.metrics.roc_auc_score"}, "classification",
     "not a scikit-learn estimator"),
    ({"algorithm": "sklearn.preprocessing.StandardScaler"}, "classification",
     "not a classifier, regressor or clusterer"),
    ({"algorithm": "sklearn.ensemble.HistGradientBoostingClassifier",
      "params": {"max_dept": 3}}, "classification", r"unknown parameter\(s\) \['max_dept'\]"),
    ({"algorithm": "sklearn.ensemble.HistGradientBoostingClassifier",
      "grid": {"max_depth": [3, -1]}}, "classification", "max_depth"),
    ({"algorithm": LR, "grid": {"C": []}}, "classification", "grid 'C' must be a non-empty"),
    ({"algorithm": "sklearn.ensemble.RandomForestRegressor"}, "classification",
     "RandomForestRegressor is a regression scikit-learn estimator, task is classification"),
    ({"algorithm": LR}, "regression", "is a classification scikit-learn estimator"),
    ({"algorithm": "sklearn.cluster.AgglomerativeClustering"}, "clustering", "no predict"),
])
def test_sklearn_candidates_are_validated(candidate, task, message):
    metric = {"regression": "rmse", "clustering": "silhouette"}.get(task, "accuracy")
    with pytest.raises(ValidationError, match=message):
        TrainSettings.model_validate({"task": task, "selection": {
            "metric": metric, "candidates": [candidate]}})


def test_valid_sklearn_candidates_and_select(tmp_path, capsys):
    from medspark.cli import main, select_override
    from medspark.config import load_settings

    cfg = TrainSettings.model_validate({"selection": {"candidates": [
        {"algorithm": "sklearn.ensemble.HistGradientBoostingClassifier",
         "params": {"max_iter": 50}, "grid": {"max_depth": [3, 5]}},
        {"algorithm": "sklearn.svm.SVC", "params": {"kernel": "linear"}},
        {"algorithm": "RandomForestClassifier"}]}})
    assert [c.is_sklearn() for c in cfg.candidates()] == [True, True, False]
    assert cfg.sklearn_max_rows == 200_000
    for task, path in (("regression", "sklearn.linear_model.Ridge"),
                       ("clustering", "sklearn.mixture.GaussianMixture")):
        TrainSettings.model_validate({"task": task, "selection": {
            "metric": "r2" if task == "regression" else "silhouette",
            "candidates": [{"algorithm": path}]}})
    select = select_override("LogisticRegression, sklearn.svm.LinearSVC")
    settings = load_settings(None, [select])
    assert [c.algorithm for c in settings.train.selection.candidates] == \
        ["LogisticRegression", "sklearn.svm.LinearSVC"]
    assert main(["train", "--lake", str(tmp_path), "--select", "sklearn.svm.LinearSVD"]) == 2
    assert "did you mean sklearn.svm.LinearSVR, sklearn.svm.LinearSVC" in capsys.readouterr().err


def test_sklearn_max_rows_is_enforced(spark, wdbc):
    with pytest.raises(ConfigError, match=r"train.sklearn_max_rows=100: the training split "
                                          r"has \d+ rows"):
        run_train(spark, Settings(), wdbc["lake"], table=wdbc["table"],
                  train=config(sklearn_max_rows=100))


# ------------------------------------------------------------------------------ selection
def test_mixed_leaderboard(mixed):
    board = mixed["board"]
    print(board[["algorithm", "kind", "params", "mean", "sd", "error"]].to_string())
    assert sorted(board["kind"]) == ["mllib", "sklearn", "sklearn", "sklearn"]
    assert 9 in mixed["search_stage_tasks"]  # 3 scikit-learn grid points x 3 folds: 9 tasks
    assert (board["metric"] == "accuracy").all()
    assert board["rank"].tolist() == [1, 2, 3, 4]
    ok = board[board["error"].isna()]
    assert len(ok) == 3 and (ok["n_folds"] == 3).all()
    assert ok["mean"].is_monotonic_decreasing  # ranked by the one metric, kinds mixed
    failed = board.iloc[-1]
    assert failed["algorithm"] == LR and np.isnan(failed["mean"]) and failed["rank"] == 4
    assert "lbfgs" in failed["error"]
    lr = board[(board["algorithm"] == LR) & board["error"].isna()]
    print("WDBC, 3-fold grouped CV accuracy, sklearn LogisticRegression:",
          dict(zip(lr["params"], lr["mean"], strict=True)))
    assert (lr["mean"] >= 0.95).all()
    tree = board[board["kind"] == "mllib"].iloc[0]
    assert 0.85 < tree["mean"] < lr["mean"].max()


def test_sklearn_folds_are_the_train_jobs_folds(mixed, wdbc):
    """The scikit-learn fold scores, recomputed here from the folds the job assigned (its
    `split/` table: group -> fold), the same rows in key order, features and metric."""
    from sklearn.metrics import accuracy_score
    from threadpoolctl import threadpool_limits

    from medspark.models.sklearn_estimators import make_pipeline

    split = pd.read_parquet(os.path.join(mixed["out"], "split"))
    fold_of = dict(zip(split["group"], split["fold"], strict=True))
    keys = wdbc["frame"].sort_values("row_id", ignore_index=True)
    keys["fold"] = keys["patient_id"].map(fold_of)
    assert keys["fold"].notna().all() and (keys["fold"] == -1).mean() == pytest.approx(0.2, 0.1)
    rest = keys[keys["fold"] >= 0]
    board = mixed["board"]
    for _, row in board[(board["algorithm"] == LR) & board["error"].isna()].iterrows():
        expected = []
        for fold in range(3):
            model = make_pipeline(LR, json.loads(row["params"]), scale=True)
            tr, te = rest[rest["fold"] != fold], rest[rest["fold"] == fold]
            with threadpool_limits(1):
                model.fit(tr[wdbc["features"]], tr["target"].astype(float))
                expected.append(accuracy_score(te["target"], model.predict(te[wdbc["features"]])))
        np.testing.assert_allclose(row["fold_scores"], expected, rtol=0, atol=1e-12)


def test_sklearn_winner_saved(mixed, wdbc):
    manifest, out = mixed["manifest"], mixed["out"]
    assert manifest["best"]["kind"] == "sklearn" and manifest["best"]["algorithm"] == LR
    assert manifest["model_id"].startswith("sklearn-logisticregression-")
    names = set(os.listdir(out))
    assert {"sklearn_pipeline.joblib", "imputer", "metrics.json", "metadata.json",
            "leaderboard.parquet", "roc.png", "pr.png", "calibration.png", "confusion.png",
            "feature_coefficient.png"} <= names and "pipeline" not in names
    meta = read_json(os.path.join(out, "metadata.json"))
    assert meta["kind"] == "sklearn" and meta["model_file"] == "sklearn_pipeline.joblib"
    assert meta["versions"]["scikit-learn"] and meta["versions"]["joblib"]
    assert len(meta["weights"]["values"]) == 30 and meta["weights"]["kind"] == "coefficient"
    model = joblib.load(os.path.join(out, "sklearn_pipeline.joblib"))
    assert [name for name, _ in model.steps] == ["scale", "model"]  # standardize: true
    assert manifest["best"]["params"]["C"] == model.named_steps["model"].C
    metrics = read_json(os.path.join(out, "metrics.json"))
    acc = metrics["test"]["accuracy"]
    print("WDBC held-out accuracy (sklearn LogisticRegression):", acc)
    assert acc["value"] >= 0.93 and acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    assert metrics["test"]["roc_auc"]["value"] > 0.97


def test_sklearn_model_predicts_in_a_fresh_process(spark, mixed, wdbc, tmp_path):
    lake, model_id = wdbc["lake"], mixed["manifest"]["model_id"]
    here = run_predict(spark, Settings(), lake, model_id, table=wdbc["table"],
                       run_date=dt.date(2000, 1, 1))
    assert here["counts"]["predicted"] == 569 and here["counts"]["rejected"] == 0
    cli = [os.path.join(os.path.dirname(sys.executable), "medspark")]
    if not os.path.exists(cli[0]):
        cli = [sys.executable, "-m", "medspark.cli"]
    # the fresh process scores into a lake of its own (this one has these rows predicted)
    model_dir = os.path.join(lake, "models", model_id)
    done = subprocess.run([*cli, "predict", "--lake", str(tmp_path / "other"), "--model",
                           model_dir, "--table", wdbc["table"], "--master", "local[1]",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    there = json.loads(done.stdout)["outputs"]["predictions"]
    assert there["table"] != here["outputs"]["predictions"]["table"]
    a = read(here["outputs"]["predictions"]).set_index("row_id").sort_index()
    b = read(there).set_index("row_id").sort_index()
    assert a.index.equals(b.index) and len(a) == 569
    assert {"model_id", "score", "probability", "prediction", "predicted_label"} <= set(a.columns)
    np.testing.assert_allclose(b["score"], a["score"], rtol=0, atol=1e-12)
    assert (a["predicted_label"] == b["predicted_label"]).all()
    # the broadcast UDF scores what the saved pipeline itself predicts
    model = joblib.load(os.path.join(mixed["out"], "sklearn_pipeline.joblib"))
    rows = wdbc["frame"].set_index("row_id").loc[a.index]
    np.testing.assert_allclose(a["score"], model.predict_proba(rows[wdbc["features"]])[:, 1],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.vstack(a["probability"]).sum(axis=1), 1.0, atol=1e-12)
    assert set(a["predicted_label"]) == {"0", "1"}
    assert (a["predicted_label"].astype(int) == a["prediction"]).all()
    assert ((a["prediction"] == rows["target"]).mean()) > 0.95


# ----------------------------------------------------------------- regression, clustering
def blobs(path: str, n_patients: int = 30, rows: int = 3) -> str:
    """Patients with a few rows: `value` linear in f0, f2; f3, f4 shifted by `target`."""
    rng = np.random.default_rng(0)
    n = n_patients * rows
    x = rng.normal(size=(n, 5))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    x[:, 3:] += 4.0 * y[:, None]
    pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).assign(
        row_id=np.arange(n), patient_id=[f"p{p:03d}" for p in np.repeat(range(n_patients), rows)],
        target=y, value=x[:, 0] * 2 + x[:, 2] + rng.normal(scale=0.1, size=n),
    ).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("task,candidate,metric", [
    ("regression", {"algorithm": "sklearn.linear_model.Ridge", "grid": {"alpha": [0.1, 10.0]}},
     "rmse"),
    ("clustering", {"algorithm": "sklearn.cluster.KMeans",
                    "params": {"n_clusters": 2, "n_init": 3}}, "silhouette"),
])
def test_sklearn_regression_and_clustering(spark, tmp_path, task, candidate, metric):
    table = blobs(str(tmp_path / "blobs.parquet"))
    cfg = TrainSettings.model_validate({
        "task": task, "label": "value" if task == "regression" else "target",
        "id_col": "row_id", "group_col": "patient_id", "features": ["f*"], "n_boot": 20,
        "selection": {"folds": 2, "metric": metric, "candidates": [candidate]}})
    manifest = run_train(spark, Settings(), str(tmp_path / "lake"), table=table, train=cfg)
    board = pd.read_parquet(os.path.join(manifest["outputs"]["model"], "leaderboard.parquet"))
    assert (board["kind"] == "sklearn").all() and np.isfinite(board["mean"]).all(), board
    test = manifest["test_metrics"]
    if task == "regression":
        assert board["mean"].iloc[0] < 0.5 and test["r2"] > 0.9
        assert json.loads(board["params"].iloc[0]) == {"alpha": 0.1}
    else:
        assert board["mean"].iloc[0] > 0.3 and test["n_clusters"] == 2
        assert test["silhouette"] > 0.3
    out = run_predict(spark, Settings(), str(tmp_path / "lake"), manifest["model_id"],
                      table=table, run_date=dt.date(2000, 1, 2))
    pred = read(out["outputs"]["predictions"])
    assert len(pred) == 90 and pred["prediction"].notna().all()
    if task == "clustering":
        assert set(pred["predicted_label"]) == {"0", "1"}


# ------------------------------------------------------------------------------ pure parts
def test_class_probabilities_by_class_index():
    from sklearn.svm import LinearSVC

    from medspark.models.sklearn_candidates import class_probabilities, estimator_weights

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    svc = LinearSVC().fit(X, [0.0, 0.0, 2.0, 2.0])  # class 1 absent from this fit
    prob = class_probabilities(svc, X, n_classes=3)
    assert prob.shape == (4, 3) and (prob[:, 1] == 0).all()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    margin = svc.decision_function(X)
    np.testing.assert_allclose(prob[:, 2], 1 / (1 + np.exp(-margin)))
    assert estimator_weights(svc, ["a", "b"])[0] == "coefficient"
    assert estimator_weights(svc, ["a"]) is None
