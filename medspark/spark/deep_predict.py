"""Scoring and embedding with a deep model in Spark, through `predict_batch_udf`.

Each Python worker loads the model once (`medspark.deep.infer.Scorer`, cached by
`predict_batch_udf` per model) and scores the plane columns (`height`, `width`, `channels`,
`dtype`, `data`) in batches of `predict_batch_size` rows; a GRU scores one row per series
(`deep_source.series_rows`). `predict_frame` gives the columns `medspark predict` writes for any
model (key, group, model_id, score, probability, prediction, predicted_label), so the predict
job can route `kind: torch` models here:

    from medspark.spark.deep_predict import input_frame, predict_frame, unscorable
    frame = input_frame(spark, lake, model_dir)          # the model's source rows
    predictions = predict_frame(spark, model_dir, frame)
    rejected = unscorable(frame, model_dir)              # key, step, reason

Scores: classification: probability = softmax over the classes (in `labels` order),
prediction = class index (double), score = P(last class) for two classes, else the top
probability, predicted_label = the class name; regression: score = prediction = the output;
autoencoder: score = reconstruction error (MSE), prediction / predicted_label null.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.config import ConfigError
from medspark.lake import Lake
from medspark.spark.deep_source import PLANE_COLUMNS, load_source, series_rows

SERIES_INPUTS = ("heights", "widths", "channels", "dtypes", "datas")
PREDICTION = T.StructType([T.StructField("score", T.DoubleType()),
                           T.StructField("probability", T.ArrayType(T.DoubleType())),
                           T.StructField("prediction", T.DoubleType())])
EMBEDDING = T.StructType([T.StructField("embedding", T.ArrayType(T.DoubleType())),
                          T.StructField("recon_error", T.DoubleType())])


def model_config(model_dir: str) -> dict[str, Any]:
    """`model_config.json` of a deep model folder (ConfigError when it is not one)."""
    from medspark.deep.infer import CONFIG_FILE

    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{model_dir} is not a deep model folder (no {CONFIG_FILE})")
    with open(path) as fh:
        return json.load(fh)


def batch_udf(model_dir: str, doc: dict[str, Any], mode: str = "predict"):
    """A `predict_batch_udf` over plane columns (series arrays for a GRU's predictions):
    `predict` -> struct(score, probability, prediction); `embed` -> struct(embedding,
    recon_error)."""
    from pyspark.ml.functions import predict_batch_udf

    device = doc.get("predict_device", "auto")
    series = doc["architecture"]["arch"] == "gru" and mode == "predict"

    def make_predict_fn():
        from medspark.deep.infer import Scorer

        scorer = Scorer.load(model_dir, device=device)
        run = scorer.predict if mode == "predict" else scorer.embed

        def predict(heights, widths, channels, dtypes, datas):
            return run(heights, widths, channels, dtypes, datas)

        return predict

    return predict_batch_udf(make_predict_fn,
                             return_type=PREDICTION if mode == "predict" else EMBEDDING,
                             batch_size=int(doc.get("predict_batch_size", 256)),
                             input_tensor_shapes=[None] * 5 if series else None)


def score(frame: DataFrame, model_dir: str, doc: dict[str, Any]) -> DataFrame:
    """`frame` (plane rows, or series rows for a GRU) with score, probability, prediction."""
    series = doc["architecture"]["arch"] == "gru"
    inputs = SERIES_INPUTS if series else PLANE_COLUMNS
    udf = batch_udf(model_dir, doc, "predict")
    out = frame.withColumn("_p", udf(*inputs))
    return out.select(*[c for c in frame.columns if c not in inputs], "_p.score",
                      "_p.probability", "_p.prediction")


def embed(frame: DataFrame, model_dir: str, doc: dict[str, Any]) -> DataFrame:
    """`frame` (plane rows) with `embedding` (array) and `recon_error` (null unless an
    autoencoder), the pixel columns dropped."""
    udf = batch_udf(model_dir, doc, "embed")
    out = frame.withColumn("_e", udf(*PLANE_COLUMNS))
    recon = F.col("_e.recon_error") if doc["objective"] == "reconstruction" else \
        F.lit(None).cast("double")
    return out.select(*[c for c in frame.columns if c not in PLANE_COLUMNS],
                      F.col("_e.embedding").alias("embedding"), recon.alias("recon_error"))


def model_rows(frame: DataFrame, doc: dict[str, Any]) -> DataFrame:
    """Usable rows shaped as in training: plane rows with pixels, or one row per series (null
    series: the plane is its own series) for a GRU; a missing group column becomes null."""
    frame = frame.where(F.col("data").isNotNull())
    if "preprocess_error" in frame.columns:
        frame = frame.where(F.col("preprocess_error").isNull())
    group = doc["group_col"]
    if group not in frame.columns:
        frame = frame.withColumn(group, F.lit(None).cast("string"))
    if doc["architecture"]["arch"] != "gru":
        return frame
    series = doc["series_col"]
    src = F.col(series) if series in frame.columns else F.lit(None).cast("string")
    frame = frame.withColumn(doc["key_col"], F.coalesce(src, F.col("image_id")))
    return series_rows(frame, doc["key_col"], [group])


def predict_frame(spark: SparkSession, model_dir: str, frame: DataFrame) -> DataFrame:
    """Predictions of a deep model: the columns of `medspark predict`'s predictions (key,
    group, model_id, score, [probability], prediction, [predicted_label]; probability and
    predicted_label for classification only, as for MLlib / scikit-learn models)."""
    del spark  # the frame's session scores it
    doc = model_config(model_dir)
    scored = score(model_rows(frame, doc), model_dir, doc)
    key, group, objective = doc["key_col"], doc["group_col"], doc["objective"]
    cols = [key, group, F.lit(doc["model_id"]).alias("model_id"), "score"]
    if objective == "classification":
        names = F.array(*[F.lit(str(v)) for v in doc.get("labels") or []])
        cols += ["probability", "prediction",
                 F.element_at(names, F.col("prediction").cast("int") + 1)
                 .alias("predicted_label")]
    elif objective == "regression":
        cols.append("prediction")
    else:  # an autoencoder has a score (reconstruction error), no class
        cols.append(F.lit(None).cast("double").alias("prediction"))
    return scored.select(*cols)


def unscorable(frame: DataFrame, model_dir: str) -> DataFrame:
    """Rows `predict_frame` leaves out, with why: key, step, reason."""
    doc = model_config(model_dir)
    bad = F.col("data").isNull()
    reason = F.lit("no pixel data")
    if "preprocess_error" in frame.columns:
        bad |= F.col("preprocess_error").isNotNull()
        reason = F.coalesce(F.col("preprocess_error"), reason)
    key = "image_id" if doc["architecture"]["arch"] == "gru" else doc["key_col"]
    return frame.where(bad).select(key, F.lit("unscorable").alias("step"),
                                   reason.alias("reason"))


def input_frame(spark: SparkSession, lake: Lake, model_dir: str) -> DataFrame:
    """Every plane row of the model's source in `lake` (the preprocessed/ partition of the
    pipeline it was trained on, or pixels/ with the catalog), unscorable rows included."""
    doc = model_config(model_dir)
    src = doc["source"]
    return load_source(spark, lake, None, src["table"], src.get("modalities"),
                       pipeline_hash=src.get("pipeline_hash")).all_planes
