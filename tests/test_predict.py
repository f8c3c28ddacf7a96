"""The predict job: lake features in, predictions out; rejected rows; a fresh-process round trip."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from lake_io import read

from medspark.config import ConfigError, Settings
from medspark.lake import Lake
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
    """The lake's features table, feature set fs1, with the `features` vector, as
    imaging.py commits it."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    df = spark.createDataFrame(frame).withColumn("ingest_date", F.lit(dt.date(2026, 1, 1))) \
        .withColumn("roi_name", F.lit(None).cast("string"))
    df = VectorAssembler(inputCols=FEATURES, outputCol="features",
                         handleInvalid="keep").transform(df)
    Lake(lake).write_table(spark, df, "features/feature_set=fs1",
                           "features-20260101T000000Z-000000", "features")


def read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


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
    assert read_json(manifest["manifest_path"])["job"] == "predict"
    # a second run, on another day, finds every row predicted by this model: nothing new
    again = run_predict(spark, Settings(), lake, trained["model_id"],
                        run_date=dt.date(2026, 2, 2))
    assert again["counts"]["predicted"] == 0 and again["outputs"]["predictions"][
        "version"] is None
    assert len(read(manifest["outputs"]["predictions"])) == 144


def test_fresh_process_scores_equal(spark, lake, trained, tmp_path):
    """The same model and features scored in this process and in a fresh one (each into its
    own copy of the lake) give the same scores."""
    copies = {}
    for name in ("here", "there"):
        copies[name] = str(tmp_path / name)
        shutil.copytree(f"{lake}/features", f"{copies[name]}/features")
    in_process = run_predict(spark, Settings(), copies["here"], trained["outputs"]["model"],
                             run_date=dt.date(2026, 2, 2))
    script = textwrap.dedent(f"""
        import datetime as dt
        from medspark.config import Settings, SparkSettings
        from medspark.session import build_session
        from medspark.spark.predict import run_predict
        spark = build_session(SparkSettings(master="local[1]",
                                            conf={{"spark.ui.enabled": False}}))
        run_predict(spark, Settings(), {copies["there"]!r}, {trained['outputs']['model']!r},
                    run_date=dt.date(2026, 2, 3))
        spark.stop()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    here = read(in_process["outputs"]["predictions"]).set_index("image_id").sort_index()
    there = read(f"{copies['there']}/predictions/model={trained['model_id']}").set_index(
        "image_id").sort_index()
    assert len(here) == 144 and here.index.equals(there.index)
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
    assert set(rejected["key"]) == set(frame.loc[[1, 5, 9, 2, 7], "image_id"])
    assert rejected.loc[rejected["step"] == "feature_error", "reason"].str.contains(
        "empty mask").all()
    scored = read(manifest["outputs"]["predictions"])
    assert not set(scored["image_id"]) & set(rejected["key"])


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


def test_two_tables_on_the_same_day_keep_both(spark, lake, trained, tmp_path):
    """Defect 0: scoring a second table with the same model on the same day replaced the
    first table's predictions."""
    frame = feature_rows()
    paths = []
    for i, part in enumerate((frame.iloc[:60], frame.iloc[60:])):
        paths.append(str(tmp_path / f"p{i}.parquet"))
        part.to_parquet(paths[-1], index=False)
    day = dt.date(2026, 2, 6)
    first = run_predict(spark, Settings(), lake, trained["model_id"], table=paths[0],
                        run_date=day)
    second = run_predict(spark, Settings(), lake, trained["model_id"], table=paths[1],
                         run_date=day)
    assert first["counts"]["predicted"] == 60 and second["counts"]["predicted"] == 84
    out = read(second["outputs"]["predictions"])
    for path, part in zip(paths, (frame.iloc[:60], frame.iloc[60:]), strict=True):
        got = out[out["source"] == path]
        assert sorted(got["image_id"]) == sorted(part["image_id"])
    # the same table again: every row already predicted from it, nothing committed
    again = run_predict(spark, Settings(), lake, trained["model_id"], table=paths[0],
                        run_date=day)
    assert again["counts"]["predicted"] == 0
    assert len(read(second["outputs"]["predictions"])) == len(out)
