"""A real image set end to end: scikit-learn's 1797 handwritten digit scans written as PNG files
in one folder per class, ingested with --label-from-path, a CNN trained with `medspark deep
train` through TorchDistributor (2 DDP processes), scored with predict_batch_udf (in this
process, and by `medspark predict` in a fresh one), embedded as a feature set that `medspark
train` reads."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from medspark.cli import main as cli_main  # noqa: E402
from medspark.commands.deep import main as deep_main  # noqa: E402
from medspark.config import Settings  # noqa: E402
from medspark.lake import Lake, table_of  # noqa: E402
from medspark.models.config import TrainSettings  # noqa: E402

DEEP = ["deep.source=pixels", "deep.input_size=8", "deep.epochs=8", "deep.batch_size=32",
        "deep.cnn.widths=[32, 64]", "deep.optimizer.lr=0.005", "deep.num_processes=2",
        "deep.patience=3", "deep.threads=1", "train.n_boot=50", "train.test_size=0.2"]


@pytest.fixture(scope="module")
def digits(spark, tmp_path_factory):
    """The digits as PNGs (0..16 scaled to 0..255), ingested, and a CNN trained on them."""
    import cv2
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    data = load_digits()
    for i, (image, target) in enumerate(zip(data.images, data.target, strict=True)):
        folder = root / "png" / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"scan{i:04d}.png"), np.round(image * 255 / 16).astype(np.uint8))
    lake = str(root / "lake")
    assert cli_main(["ingest", "--input", str(root / "png"), "--lake", lake,
                     "--label-from-path", r"/png/(\d)/"]) == 0
    sets = [a for s in DEEP for a in ("--set", s)]
    assert deep_main(["train", "--lake", lake, "--arch", "cnn", *sets]) == 0
    manifest = read_json(sorted(glob.glob(f"{lake}/_runs/deep-train-*.json"))[-1])
    return {"lake": lake, "manifest": manifest, "model": manifest["outputs"]["model"],
            "root": root}


def read_json(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def test_cnn_held_out_accuracy(digits):
    model = digits["model"]
    metrics = read_json(f"{model}/metrics.json")
    assert metrics["test"]["accuracy"]["value"] >= 0.95, metrics["test"]["accuracy"]
    assert metrics["test"]["accuracy"]["ci_low"] is not None
    assert len(metrics["test"]["confusion_matrix"]["value"]) == 10
    meta = read_json(f"{model}/metadata.json")
    assert meta["kind"] == "torch" and meta["algorithm"] == "cnn"
    assert meta["labels"] == [str(d) for d in range(10)]
    assert meta["preprocessing"]["table"] == "pixels"
    assert meta["preprocessing"]["transform"] == {"input_size": 8, "channels": 1,
                                                  "normalize": "minmax"}
    for name in ("model.pt", "model_config.json", "history.json", "training_curves.png",
                 "confusion.png"):
        assert os.path.isfile(f"{model}/{name}"), name
    assert not os.path.exists(f"{model}/checkpoints") and not os.path.exists(f"{model}/_work")
    m = digits["manifest"]
    assert m["training"]["world_size"] == 2 and m["training"]["backend"] == "gloo"
    assert len(m["history"]) == m["training"]["epochs_run"] >= 1
    assert {"train_loss", "val_loss", "val_accuracy", "images_per_s"} <= set(m["history"][0])
    # PNGs have no patient: every image is its own group, and the manifest says so
    assert m["counts"]["planes_without_group"] == m["counts"]["units_without_group"] == 1797
    assert "own group" in m["split"]["null_groups"]
    rows = m["split"]["rows"]
    assert rows["test"] == m["counts"]["test_rows_scored"] and sum(rows.values()) == 1797
    assert m["counts"]["train_rows"] == rows["train"]


def _predictions(spark, model: str, lake: str) -> pd.DataFrame:
    from medspark.spark.deep_predict import input_frame, predict_frame

    frame = input_frame(spark, Lake(lake), model)
    return predict_frame(spark, model, frame).toPandas().sort_values("image_id") \
        .reset_index(drop=True)


def test_medspark_predict_in_a_fresh_process_equals_in_process(spark, digits):
    mine = _predictions(spark, digits["model"], digits["lake"])
    assert list(mine.columns) == ["image_id", "patient_pseudo_id", "model_id", "score",
                                  "probability", "prediction", "predicted_label"]
    assert len(mine) == 1797
    assert ((mine["prediction"].astype(int).astype(str)) == mine["predicted_label"]).all()
    assert np.allclose([sum(p) for p in mine["probability"]], 1.0)
    model_id = digits["manifest"]["model_id"]
    subprocess.run([sys.executable, "-m", "medspark.cli", "predict", "--lake", digits["lake"],
                    "--model", model_id, "--master", "local[1]", "--conf",
                    "spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"],
                   check=True, timeout=300)  # C1 JIT only: a short JVM, less CPU
    fresh = Lake(digits["lake"]).read(spark, table_of("predictions", model_id)).toPandas() \
        .sort_values("image_id").reset_index(drop=True)
    assert (fresh["image_id"] == mine["image_id"]).all()
    assert np.allclose(fresh["score"], mine["score"], rtol=0, atol=1e-6)
    assert (fresh["predicted_label"] == mine["predicted_label"]).all()


def test_embeddings_feed_medspark_train(spark, digits):
    from medspark.spark.deep_embed import run_deep_embed
    from medspark.spark.train import run_train

    manifest = run_deep_embed(spark, Settings(), digits["lake"], "latest")
    feature_set = manifest["feature_set"]
    assert feature_set == f"deep-{digits['manifest']['model_id']}"
    assert manifest["counts"]["rows_added"] == 1797 and manifest["n_features"] == 64
    features = Lake(digits["lake"]).read(spark, table_of("features", feature_set))
    assert {"image_id", "label", "ingest_date", "deep_0", "deep_63", "features"} <= \
        set(features.columns)
    assert "deep_recon_error" not in features.columns  # a CNN has no reconstruction
    cfg = TrainSettings.model_validate({
        "feature_set": feature_set, "features": ["deep_*"], "n_boot": 20, "aggregate": "none",
        "selection": {"folds": 2, "candidates": [
            {"algorithm": "LogisticRegression", "params": {"maxIter": 50}}]}})
    trained = run_train(spark, Settings(), digits["lake"], label="label", group_col="image_id",
                        train=cfg)
    assert trained["test_metrics"]["accuracy"] >= 0.9, trained["test_metrics"]
