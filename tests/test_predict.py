"""The predict job: lake features in, predictions out; rejected rows; a fresh-process round trip."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from medspark.config import ConfigError, Settings
from medspark.models.config import TrainSettings
from medspark.spark.predict import run_predict
from medspark.spark.train import run_train

FEATURES = ["firstorder_Mean", "firstorder_Energy", "glcm_Contrast", "glcm_Correlation",
            "shape2D_Perimeter"]
PLAN = {"rules": [{"strategy": "drop_rows", "columns": ["firstorder_Mean"]},
                  {"strategy": "fill", "columns": ["*"], "method": "median"}]}


def feature_rows(n_patients: int = 24, series: int = 2, planes: int = 3) -> pd.DataFrame:
    """Plane rows shaped like features/: catalog columns, label string, radiomics doubles."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(n_patients):
        label = "malignant" if p % 2 else "benign"
        for s in range(series):
            for z in range(planes):
                shift = 1.0 if label == "malignant" else 0.0
                values = rng.normal(size=len(FEATURES)) + shift * np.array([1, 1, 0, 0, 0])
                rows.append({"image_id": f"img-{p:02d}-{s}-{z}", "patient_pseudo_id": f"pat{p:02d}",
                             "series_pseudo_uid": f"ser-{p:02d}-{s}", "label": label,
                             "slice_position": float(z), "modality": "CT",
                             "feature_error": None, **dict(zip(FEATURES, values, strict=True))})
    frame = pd.DataFrame(rows)
    frame.loc[::17, "glcm_Contrast"] = np.nan  # filled with the training median
    return frame


def write_features(spark, lake: str, frame: pd.DataFrame) -> None:
    """features/feature_set=fs1/ingest_date=.../ with the `features` vector, as imaging.py."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    df = spark.createDataFrame(frame).withColumn("ingest_date", F.lit("2026-01-01"))
    df = VectorAssembler(inputCols=FEATURES, outputCol="features",
                         handleInvalid="keep").transform(df)
    df.write.mode("overwrite").partitionBy("ingest_date").parquet(
        f"{lake}/features/feature_set=fs1")


def read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def read(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("predict") / "lake")
    write_features(spark, root, feature_rows())
    return root


@pytest.fixture(scope="module")
def trained(spark, lake):
    cfg = TrainSettings.model_validate({
        "missing": PLAN, "n_boot": 20,
        "selection": {"folds": 2, "candidates": [
            {"algorithm": "LogisticRegression", "params": {"maxIter": 10}}]}})
    return run_train(spark, Settings(), lake, label="label", train=cfg)


def test_train_on_lake_features(lake, trained):
    meta = read_json(os.path.join(trained["outputs"]["model"], "metadata.json"))
    assert meta["features"] == FEATURES and meta["labels"] == ["benign", "malignant"]
    assert meta["source"]["feature_set"] == "fs1" and meta["key_col"] == "image_id"
    assert meta["group_col"] == "patient_pseudo_id"
    assert trained["test_metrics"]["roc_auc"] > 0.6


def test_predict_lake(spark, lake, trained):
    manifest = run_predict(spark, Settings(), lake, trained["model_id"],
                           run_date=dt.date(2026, 2, 1))
    out = read(manifest["outputs"]["predictions"])
    assert len(out) == 144 and manifest["counts"]["predicted"] == 144
    assert manifest["counts"]["rejected"] == 0
    assert {"image_id", "model_id", "score", "probability", "prediction", "predicted_label"} <= \
        set(out.columns)
    assert (out["model_id"] == trained["model_id"]).all()
    assert out["score"].between(0, 1).all()
    assert set(out["predicted_label"]) <= {"benign", "malignant"}
    assert ((out["score"] >= 0.5) == (out["predicted_label"] == "malignant")).all()
    partition = f"{lake}/predictions/model={trained['model_id']}"
    assert os.path.isdir(f"{partition}/run_date=2026-02-01")
    assert read_json(manifest["manifest_path"])["job"] == "predict"


def test_fresh_process_scores_equal(spark, lake, trained):
    in_process = run_predict(spark, Settings(), lake, trained["model_id"],
                             run_date=dt.date(2026, 2, 2))
    script = textwrap.dedent(f"""
        import datetime as dt
        from medspark.config import Settings, SparkSettings
        from medspark.session import build_session
        from medspark.spark.predict import run_predict
        spark = build_session(SparkSettings(master="local[1]",
                                            conf={{"spark.ui.enabled": False}}))
        run_predict(spark, Settings(), {lake!r}, {trained['outputs']['model']!r},
                    run_date=dt.date(2026, 2, 3))
        spark.stop()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    here = read(in_process["outputs"]["predictions"]).set_index("image_id").sort_index()
    there = read(in_process["outputs"]["predictions"].replace("2026-02-02", "2026-02-03"))
    there = there.set_index("image_id").sort_index()
    assert here.index.equals(there.index)
    np.testing.assert_allclose(there["score"], here["score"], rtol=0, atol=1e-12)
    assert (there["predicted_label"] == here["predicted_label"]).all()


def test_rejected_rows_are_reported(spark, lake, trained, tmp_path):
    frame = feature_rows()
    frame.loc[[1, 5, 9], "firstorder_Mean"] = np.nan  # drop_rows rule: rejected
    frame.loc[[2, 7], "feature_error"] = "ValueError: empty mask"
    path = str(tmp_path / "to_score.parquet")
    frame.to_parquet(path, index=False)
    manifest = run_predict(spark, Settings(), lake, trained["model_id"], table=path,
                           run_date=dt.date(2026, 2, 4))
    counts = manifest["counts"]
    assert counts["predicted"] == 144 - 5 and counts["rejected"] == 5
    assert counts["rejected_by_step"] == {"0:drop_rows": 3, "feature_error": 2}
    rejected = read(manifest["outputs"]["rejected"])
    assert set(rejected["image_id"]) == set(frame.loc[[1, 5, 9, 2, 7], "image_id"])
    assert rejected.loc[rejected["step"] == "feature_error", "reason"].str.contains(
        "empty mask").all()
    scored = read(manifest["outputs"]["predictions"])
    assert not set(scored["image_id"]) & set(rejected["image_id"])


def test_missing_column_is_named(spark, lake, trained, tmp_path):
    path = str(tmp_path / "no_glcm.parquet")
    feature_rows().drop(columns="glcm_Contrast").to_parquet(path, index=False)
    with pytest.raises(ConfigError, match="glcm_Contrast"):
        run_predict(spark, Settings(), lake, trained["model_id"], table=path)
    with pytest.raises(ConfigError, match="no-such-model"):
        run_predict(spark, Settings(), lake, "no-such-model")


def test_series_level_model(spark, lake):
    cfg = TrainSettings.model_validate({
        "aggregate": "series_mean", "n_boot": 20,
        "selection": {"folds": 2, "candidates": [
            {"algorithm": "DecisionTreeClassifier", "params": {"maxDepth": 3}}]}})
    manifest = run_train(spark, Settings(), lake, label="label", train=cfg)
    assert manifest["counts"]["rows"] == 48
    out = read(run_predict(spark, Settings(), lake, manifest["model_id"],
                           run_date=dt.date(2026, 2, 5))["outputs"]["predictions"])
    assert len(out) == 48 and out["series_pseudo_uid"].is_unique
