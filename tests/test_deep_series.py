"""Series-level and unsupervised deep models on a preprocessed/ table made in the test:
synthetic CT-like slices where a series is positive when a bright nodule crosses some of its
slices. The GRU over the ordered slices predicts the series label of held-out patients; the
autoencoder's reconstruction error ranks images with a planted streak artefact above normal
ones."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from medspark.config import load_settings  # noqa: E402
from medspark.lake import Lake, table_of  # noqa: E402
from medspark.models.metrics import roc_auc  # noqa: E402
from medspark.planes import encode_plane  # noqa: E402

SIZE, SLICES, PATIENTS = 32, 6, 36
COMMON = ["deep.source=preprocessed", f"deep.input_size={SIZE}", "deep.batch_size=8",
          "deep.optimizer.lr=0.005", "deep.num_processes=1", "deep.patience=0", "deep.threads=1",
          "train.n_boot=50", "train.test_size=0.3"]


def ct_slice(rng: np.random.Generator, nodule: bool) -> np.ndarray:
    """A round 'body' with smooth texture; a nodule is a bright 3 px blob inside it."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    body = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE * 0.42) ** 2) * 0.4
    texture = cv2.GaussianBlur(rng.normal(0, 0.15, (SIZE, SIZE)).astype(np.float32), (0, 0), 2)
    image = body + texture * (body > 0)
    if nodule:
        cy, cx = rng.integers(10, SIZE - 10, 2)
        image += 0.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0**2))
    return image.astype(np.float32)


def streak(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A planted artefact: a bright 2 px streak across the slice (as from metal in CT)."""
    out = image.copy()
    row = int(rng.integers(6, SIZE - 8))
    out[row:row + 2, :] += 1.5
    return out


def series_rows(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(PATIENTS):
        label = p % 2
        hit = set(rng.choice(np.arange(1, SLICES - 1), 2, replace=False)) if label else set()
        for z in rng.permutation(SLICES):  # stored out of order: the GRU sorts by position
            rows.append({"image_id": f"p{p:02d}-s{z}", "patient_pseudo_id": f"pat{p:02d}",
                         "series_pseudo_uid": f"ser{p:02d}", "slice_position": float(z) * 2.5,
                         "plane_index": int(z), "label": label, "modality": "CT",
                         "augment_index": 0, "preprocess_error": None,
                         **encode_plane(ct_slice(rng, z in hit)),
                         "ingest_date": "2026-01-01"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    from pyspark.sql import functions as F

    from medspark.spark.imaging import pipeline_hash

    root = str(tmp_path_factory.mktemp("deep-series") / "lake")
    settings = load_settings(None, COMMON)
    df = spark.createDataFrame(series_rows())
    df = df.withColumn("ingest_date", F.to_date("ingest_date"))
    Lake(root).write_table(spark, df, table_of("preprocessed", pipeline_hash(settings)),
                           "test-setup", "test")
    return root


def train(spark, lake: str, extra: list[str]) -> dict:
    from medspark.spark.deep_train import run_deep_train

    return run_deep_train(spark, load_settings(None, COMMON + extra), lake)


def test_gru_series_level_prediction(spark, lake):
    from medspark.spark.deep_predict import input_frame, predict_frame

    manifest = train(spark, lake, ["deep.arch=gru", "deep.epochs=10",
                                   "deep.gru.encoder_widths=[8, 16]", "deep.gru.hidden=16"])
    assert manifest["counts"]["units"] == PATIENTS  # one training unit per series
    assert manifest["counts"]["planes"] == PATIENTS * SLICES
    model = manifest["outputs"]["model"]
    assert manifest["test_metrics"]["roc_auc"] >= 0.9, manifest["test_metrics"]
    out = predict_frame(spark, model, input_frame(spark, Lake(lake), model)).toPandas()
    assert list(out.columns) == ["series_pseudo_uid", "patient_pseudo_id", "model_id", "score",
                                 "probability", "prediction", "predicted_label"]
    assert len(out) == PATIENTS and out["series_pseudo_uid"].is_unique
    truth = out["series_pseudo_uid"].str[3:].astype(int) % 2
    assert roc_auc(truth.to_numpy(), out["score"].to_numpy()) >= 0.9


def test_autoencoder_ranks_planted_artefacts_first(spark, lake):
    from medspark.spark.deep_embed import run_deep_embed
    from medspark.spark.deep_predict import predict_frame

    manifest = train(spark, lake, ["deep.arch=autoencoder", "deep.epochs=10",
                                   "deep.autoencoder.widths=[8, 16, 32]",
                                   "deep.autoencoder.latent_dim=16"])
    model = manifest["outputs"]["model"]
    assert "recon_mse" in manifest["test_metrics"]
    rng = np.random.default_rng(99)  # new images, never seen in training
    normal = [ct_slice(rng, nodule=i % 3 == 0) for i in range(40)]
    broken = [streak(ct_slice(rng, nodule=i % 3 == 0), rng) for i in range(40)]
    frame = spark.createDataFrame(pd.DataFrame(
        [{"image_id": f"new{i:03d}", **encode_plane(img)}
         for i, img in enumerate(normal + broken)]))
    scored = predict_frame(spark, model, frame).toPandas().sort_values("image_id")
    assert scored["prediction"].isna().all() and "probability" not in scored.columns
    truth = np.r_[np.zeros(len(normal)), np.ones(len(broken))].astype(int)
    assert roc_auc(truth, scored["score"].to_numpy()) >= 0.9

    embedded = run_deep_embed(spark, load_settings(None, COMMON), lake, model)
    features = Lake(lake).read(spark, table_of("features", embedded["feature_set"])).toPandas()
    assert len(features) == PATIENTS * SLICES
    assert {"deep_0", "deep_15", "deep_recon_error"} <= set(features.columns)
    assert (features["deep_recon_error"] > 0).all()
