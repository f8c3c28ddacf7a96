"""scikit-learn on Spark on real data: WDBC (sklearn's breast cancer set) with patients and sites.

Each of the 569 tumours becomes a patient; about half get one or two extra rows (copies with 1%
multiplicative noise), so rows of one patient are near-duplicates and grouping matters. Each
patient belongs to one of three sites.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.metrics import accuracy_score

from medspark.models.sklearn_estimators import (
    SearchData,
    SearchSpec,
    best_candidate,
    evaluate_fold,
    leaderboard,
    make_pipeline,
    resolve_estimator,
    score_method,
)
from medspark.models.splits import check_leakage, train_test_split_grouped
from medspark.spark.sklearn_jobs import (
    SEARCH_JOB_GROUP,
    fit_on_driver,
    fit_per_group,
    load_group_models,
    parallel_search,
    score_per_group,
    score_with_broadcast,
    serial_search,
)

LR = "sklearn.linear_model.LogisticRegression"
FEATURES = [f"f{i:02d}" for i in range(30)]


@pytest.fixture(scope="module")
def wdbc() -> pd.DataFrame:
    data = load_breast_cancer()
    rng = np.random.default_rng(0)
    base = pd.DataFrame(data.data, columns=FEATURES)
    base["label"] = data.target.astype("int64")
    base["patient_id"] = [f"p{i:03d}" for i in range(len(base))]
    base["site"] = rng.choice(["A", "B", "C"], size=len(base))
    extra = rng.choice([0, 1, 2], size=len(base), p=[0.5, 0.3, 0.2])
    parts = [base]
    for copy in (1, 2):
        noisy = base[extra >= copy].copy()
        noisy[FEATURES] *= 1 + rng.normal(0, 0.01, size=(len(noisy), len(FEATURES)))
        parts.append(noisy)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def wdbc_df(spark, wdbc):
    return spark.createDataFrame(wdbc).cache()


# ---------------------------------------------------------------------------- resolution
def test_resolve_estimator_sets_and_validates_params():
    est = resolve_estimator(LR, {"C": 0.5, "max_iter": 50})
    assert type(est).__name__ == "LogisticRegression"
    assert (est.C, est.max_iter) == (0.5, 50)
    ovr = resolve_estimator("sklearn.multiclass.OneVsRestClassifier",
                            {"estimator": resolve_estimator(LR, {}), "estimator__C": 2.0})
    assert ovr.estimator.C == 2.0
    pipe = make_pipeline("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 5}, seed=3)
    assert [n for n, _ in pipe.steps] == ["impute", "scale", "model"]
    assert pipe.named_steps["model"].random_state == 3


@pytest.mark.parametrize(("path", "params", "message"), [
    ("os.system", {}, "must start with"),
    ("sklearn.linear_model.LogisticRegression; import os", {}, "not a dotted import path"),
    ("sklearn.no_such_module.Thing", {}, "no module"),
    ("sklearn.ensemble.RandomForestClassifer", {},
     "did you mean sklearn.ensemble.RandomForestClassifier"),
    ("sklearn.metrics.roc_auc_score", {}, "not a scikit-learn estimator"),
    ("sklearn.model_selection.KFold", {}, "not a scikit-learn estimator"),
    (LR, {"Cc": 1.0}, "unknown parameter"),
    (LR, {"C": -1.0}, "invalid parameters"),
    (LR, {"solver": "no-such-solver"}, "invalid parameters"),
    ("sklearn.multiclass.OneVsRestClassifier",
     {"estimator": None, "estimator__C": 1.0}, "invalid parameters"),
])
def test_resolve_estimator_errors(path, params, message):
    with pytest.raises(ValueError, match=message):
        resolve_estimator(path, params)


# ---------------------------------------------------------------------------- (a) driver
def test_fit_on_driver_grouped_holdout(wdbc_df, wdbc):
    # five grouped 75/25 holdouts (patients never on both sides); one split alone is noisy
    accs = []
    for seed in range(5):
        split = train_test_split_grouped(wdbc, "patient_id", "label", test_size=0.25, seed=seed)
        assert check_leakage(wdbc, "patient_id", split).ok
        train_df = wdbc_df.where(F.col("patient_id").isin(split.train_groups))
        model = fit_on_driver(train_df, FEATURES, "label", LR, {"C": 1.0, "max_iter": 1000})
        test = wdbc.iloc[split.test]
        accs.append(accuracy_score(test["label"], model.predict(test[FEATURES])))
    assert np.mean(accs) >= 0.95 and min(accs) >= 0.93, accs
    with pytest.raises(ValueError, match="max_rows=100"):
        fit_on_driver(wdbc_df, FEATURES, "label", LR, {}, max_rows=100)
    with pytest.raises(ValueError, match="not numeric"):
        fit_on_driver(wdbc_df, ["f00", "site"], "label", LR, {})
    with pytest.raises(KeyError, match="nope"):
        fit_on_driver(wdbc_df, ["f00", "nope"], "label", LR, {})


def test_fit_on_driver_ignores_spark_row_order(wdbc_df):
    rf = "sklearn.ensemble.RandomForestClassifier"
    params = {"n_estimators": 10, "max_depth": 4}
    one = fit_on_driver(wdbc_df.repartition(3), FEATURES, "label", rf, params, seed=1)
    two = fit_on_driver(wdbc_df.orderBy(F.col("f03").desc()), FEATURES, "label", rf, params,
                        seed=1)
    np.testing.assert_array_equal(one.named_steps["model"].feature_importances_,
                                  two.named_steps["model"].feature_importances_)


# ---------------------------------------------------------------------------- (b) per group
def test_fit_per_group_one_model_per_site_and_single_class_error(spark, wdbc, wdbc_df):
    # site D: ten benign-only rows -> an error row, not a failed job
    site_d = wdbc[wdbc["label"] == 1].head(10).assign(site="D")
    frame = pd.concat([wdbc, site_d], ignore_index=True)
    df = wdbc_df.unionByName(spark.createDataFrame(site_d))
    models = fit_per_group(df, "site", FEATURES, "label", LR, {"max_iter": 1000}).cache()
    rows = {r["site"]: r for r in models.collect()}
    assert sorted(rows) == ["A", "B", "C", "D"]
    for site in "ABC":
        r = rows[site]
        assert r["error"] is None and r["model"] is not None
        assert r["n_rows"] == int((frame["site"] == site).sum())
        assert r["train_score"] >= 0.95
    assert rows["D"]["model"] is None and rows["D"]["n_rows"] == 10
    assert "single class" in rows["D"]["error"]

    fitted = load_group_models(models, "site")
    assert sorted(fitted) == ["A", "B", "C"]
    assert len({id(m) for m in fitted.values()}) == 3
    coefs = [fitted[s].named_steps["model"].coef_ for s in "ABC"]
    assert not np.allclose(coefs[0], coefs[1])  # really one model per group

    scored = score_per_group(df, models, "site", FEATURES).toPandas()
    assert len(scored) == len(frame)
    d = scored[scored["site"] == "D"]
    assert d["score"].isna().all()
    for site in "ABC":
        part = scored[scored["site"] == site]
        expected = fitted[site].predict_proba(part[FEATURES])[:, 1]
        np.testing.assert_allclose(part["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    models.unpersist()


def test_fit_per_group_records_fit_exceptions(spark, wdbc):
    df = spark.createDataFrame(wdbc[wdbc["site"] == "A"])
    # l1 penalty with lbfgs is only rejected by fit(): the group gets the error text
    rows = fit_per_group(df, "site", FEATURES, "label", LR,
                         {"l1_ratio": 1.0, "solver": "lbfgs"}).collect()
    assert len(rows) == 1 and rows[0]["model"] is None
    assert "ValueError" in rows[0]["error"] and "lbfgs" in rows[0]["error"]


# ---------------------------------------------------------------------------- (c) search
def test_parallel_search_matches_serial(spark, wdbc_df, wdbc):
    grid = {"C": [0.01, 0.1, 1.0, 10.0], "max_iter": [1000]}
    par = parallel_search(wdbc_df, FEATURES, "label", "patient_id", LR, grid, k=5, seed=0)
    # one Spark task per (candidate, fold)
    tracker = spark.sparkContext.statusTracker()
    jobs = sorted(tracker.getJobIdsForGroup(SEARCH_JOB_GROUP))
    assert jobs
    stages = tracker.getJobInfo(jobs[-1]).stageIds
    assert sum(tracker.getStageInfo(s).numTasks for s in stages) == 20
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None
    ser = serial_search(wdbc_df, FEATURES, "label", "patient_id", LR, grid, k=5, seed=0)
    assert par.best_params == ser.best_params
    assert par.leaderboard["fold_scores"].tolist() == ser.leaderboard["fold_scores"].tolist()
    board = par.leaderboard
    assert board["candidate_id"].tolist() == [0, 1, 2, 3]
    assert board["error"].isna().all()
    assert all(len(s) == 5 for s in board["fold_scores"])
    assert board["mean"].between(0.95, 1.0).all() and (board["sd"] > 0).all()
    best = board.loc[board["rank"] == 1].iloc[0]
    assert best["mean"] == board["mean"].max()
    assert par.best_params == best["params"]
    # the refit model is trained on all rows with the winning params
    assert par.best_params["C"] == par.model.named_steps["model"].C
    X = wdbc[FEATURES]
    np.testing.assert_array_equal(par.model.predict_proba(X), ser.model.predict_proba(X))


def test_search_failed_candidate_and_ties():
    data = load_breast_cancer()
    X = pd.DataFrame(data.data[:200], columns=FEATURES)
    y = data.target[:200]
    idx = np.arange(200)
    folds = [(idx[idx % 2 == f], idx[idx % 2 != f]) for f in (0, 1)]
    spec = SearchSpec(LR, [{"C": 1.0, "max_iter": 1000},
                           {"l1_ratio": 1.0, "solver": "lbfgs"},  # fails in fit
                           {"C": 1.0, "max_iter": 1000}], "roc_auc")
    sdata = SearchData(X, y, folds)
    results = [evaluate_fold(sdata, spec, c, f) for c in range(3) for f in range(2)]
    board = leaderboard(results, spec, k=2)
    assert np.isnan(board.loc[1, "mean"]) and "lbfgs" in board.loc[1, "error"]
    assert pd.isna(board.loc[1, "rank"])
    assert board.loc[0, "mean"] == board.loc[2, "mean"]  # a tie: the lower id wins
    assert best_candidate(board) == 0 and board["rank"].tolist()[0] == 1
    with pytest.raises(RuntimeError, match="every candidate failed"):
        best_candidate(leaderboard([r for r in results if r["candidate_id"] == 1],
                                   SearchSpec(LR, [spec.candidates[1]], "roc_auc"), k=2))


def test_serial_search_regression(wdbc_df):
    # a continuous target: GroupKFold folds, RMSE (negated: greater is better)
    grid = {"alpha": [0.1, 10.0, 1000.0]}
    res = serial_search(wdbc_df, FEATURES[1:], FEATURES[0], "patient_id",
                        "sklearn.linear_model.Ridge", grid, k=3,
                        metric="neg_root_mean_squared_error")
    board = res.leaderboard
    assert (board["mean"] < 0).all() and board["rank"].notna().all()
    assert res.best_params == {"alpha": 0.1}  # radius is near-linear in perimeter and area
    assert board.loc[0, "mean"] > board.loc[2, "mean"]


def test_search_rejects_bad_grid_and_metric(wdbc_df):
    with pytest.raises(ValueError, match="invalid parameters"):
        serial_search(wdbc_df, FEATURES, "label", "patient_id", LR, {"C": [1.0, -1.0]})
    with pytest.raises(ValueError, match="unknown metric"):
        serial_search(wdbc_df, FEATURES, "label", "patient_id", LR, {"C": [1.0]},
                      metric="roc_aucc")


# ---------------------------------------------------------------------------- scoring
def test_score_with_broadcast_equals_predict_proba(wdbc_df, wdbc):
    model = make_pipeline(LR, {"max_iter": 1000}).fit(wdbc[FEATURES], wdbc["label"])
    scored = score_with_broadcast(wdbc_df, model, FEATURES).toPandas()
    assert len(scored) == len(wdbc)
    expected = model.predict_proba(scored[FEATURES])[:, 1]
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="already exists"):
        score_with_broadcast(wdbc_df, model, FEATURES, output_col="label")


def test_score_with_broadcast_regressor_and_decision_function(wdbc_df, wdbc):
    target = FEATURES[0]
    inputs = FEATURES[1:]
    ridge = make_pipeline("sklearn.linear_model.Ridge", {}).fit(wdbc[inputs], wdbc[target])
    svc = make_pipeline("sklearn.svm.LinearSVC", {}).fit(wdbc[FEATURES], wdbc["label"])
    scored = score_with_broadcast(wdbc_df, ridge, inputs, output_col="pred")
    scored = score_with_broadcast(scored, svc, FEATURES, output_col="margin").toPandas()
    np.testing.assert_allclose(scored["pred"], ridge.predict(scored[inputs]), atol=1e-9)
    np.testing.assert_allclose(scored["margin"], svc.decision_function(scored[FEATURES]),
                               atol=1e-9)
    iris = load_iris()
    multi = make_pipeline(LR, {"max_iter": 1000}).fit(iris.data, iris.target)
    with pytest.raises(ValueError, match="only for binary classifiers"):
        score_method(multi)
    assert score_method(multi, "predict") == "predict"
    # a pickled round trip (as the per-group table stores models) scores the same
    clone = pickle.loads(pickle.dumps(svc))
    np.testing.assert_array_equal(clone.decision_function(wdbc[FEATURES]),
                                  svc.decision_function(wdbc[FEATURES]))


def test_predict_with_broadcast_is_mllib_shaped(spark):
    # iris: three classes; labels are class indices as the train job encodes them
    from pyspark.ml.functions import vector_to_array

    from medspark.spark.sklearn_jobs import predict_with_broadcast

    iris = load_iris()
    cols = ["a", "b", "c", "d"]
    frame = pd.DataFrame(iris.data, columns=cols).assign(row=np.arange(150))
    model = make_pipeline(LR, {"max_iter": 1000}, impute=False).fit(
        frame[cols], iris.target.astype(float))
    out = predict_with_broadcast(spark.createDataFrame(frame), model, cols, "classification",
                                 n_classes=3)
    assert dict(out.dtypes)["probability"] == "vector"
    got = out.withColumn("p", vector_to_array("probability")).toPandas().sort_values("row")
    np.testing.assert_allclose(np.vstack(got["p"]), model.predict_proba(frame[cols]),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got["prediction"], model.predict(frame[cols]))
    with pytest.raises(ValueError, match="already exist"):
        predict_with_broadcast(out, model, cols, "classification", n_classes=3)
