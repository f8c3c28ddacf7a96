"""scikit-learn estimators in Spark: import-path resolution (checked parameters), pipelines, and
the scikit-learn engine's scoring (a broadcast model in a pandas UDF) equal to the model's own
predictions. Selection, refit and per-group models through `medspark train` are tested in
tests/test_train_sklearn.py and tests/test_train_interface.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from medspark.models.sklearn_estimators import make_pipeline, resolve_estimator

LR = "sklearn.linear_model.LogisticRegression"


# ---------------------------------------------------------------------------- resolution
def test_resolve_estimator_sets_and_validates_params():
    est = resolve_estimator(LR, {"C": 0.5, "max_iter": 50})
    assert type(est).__name__ == "LogisticRegression"
    assert (est.C, est.max_iter) == (0.5, 50)
    ovr = resolve_estimator("sklearn.multiclass.OneVsRestClassifier",
                            {"estimator": resolve_estimator(LR, {}), "estimator__C": 2.0})
    assert ovr.estimator.C == 2.0
    pipe = make_pipeline("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 5}, seed=3)
    assert [n for n, _ in pipe.steps] == ["scale", "model"]  # the imputer is the plan's
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


# ---------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("task", ["classification", "regression", "clustering"])
def test_sklearn_engine_scores_what_the_pipeline_predicts(spark, task):
    """The engine's transform (broadcast pipeline, pandas UDF) gives the common columns:
    prediction, per-class probability (classification), the scaled rows (clustering)."""
    from medspark.spark.models.base import ModelContext, ModelSpec
    from medspark.spark.models.sklearn_engine import SklearnModel

    iris = load_iris()
    cols = ["a", "b", "c", "d"]
    frame = pd.DataFrame(iris.data, columns=cols).assign(row=np.arange(150))
    path = {"classification": LR, "regression": "sklearn.linear_model.Ridge",
            "clustering": "sklearn.cluster.KMeans"}[task]
    params = {"n_clusters": 3, "n_init": 2} if task == "clustering" else {}
    y = iris.target.astype(float) if task != "clustering" else None
    pipe = make_pipeline(path, params).fit(frame[cols], y)
    model = SklearnModel(ModelSpec(path, params, "sklearn", path),
                         ModelContext(task, 3 if task == "classification" else 0, None, True,
                                      0, "accuracy"))
    model.fitted, model.features = pipe, cols
    got = model.transform(spark.createDataFrame(frame)).toPandas().sort_values("row")
    np.testing.assert_allclose(got["prediction"], pipe.predict(frame[cols]), atol=1e-12)
    if task == "classification":
        np.testing.assert_allclose(np.vstack(got["probability"]),
                                   pipe.predict_proba(frame[cols]), rtol=0, atol=1e-12)
    else:
        assert got["probability"].isna().all()
    if task == "clustering":
        np.testing.assert_allclose(np.vstack(got["_ms_x"]), pipe[:-1].transform(frame[cols]),
                                   atol=1e-12)
