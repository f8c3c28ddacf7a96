"""Scores of predictions held in Spark: selection statistics by aggregation, score columns.

`fold_score` counts the statistics of `medspark.models.scores` with Spark aggregates (a
confusion matrix, score histograms as one row, five sums; MLlib's `ClusteringEvaluator` for
the silhouette) and hands them to the same `score_from_stats` the scikit-learn tasks use, so
nothing row-sized reaches the driver. `add_scores` derives the columns `medspark predict`
writes from the engines' common output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medspark.models.scores import HIST_BINS, score_from_stats
from medspark.spark.models.base import LABEL, MODEL_X, PREDICTION, PROBABILITY, ModelContext


def fold_score(pred: DataFrame, ctx: ModelContext) -> float:
    """The selection metric of one fold's predictions (see `medspark.models.scores`)."""
    return score_from_stats(ctx.metric, spark_stats(pred, ctx.metric, ctx.n_classes))


def spark_stats(pred: DataFrame, metric: str, n_classes: int) -> dict[str, Any]:
    """`medspark.models.scores.fold_stats`, counted by Spark."""
    if metric in ("accuracy", "f1"):
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        for r in pred.groupBy(LABEL, PREDICTION).count().collect():
            cm[int(r[LABEL]), int(r[PREDICTION])] += r["count"]
        return {"confusion": cm}
    if metric in ("roc_auc", "pr_auc"):
        bins = F.least(F.greatest(F.floor(F.col(PROBABILITY)[1] * HIST_BINS), F.lit(0)),
                       F.lit(HIST_BINS - 1)).cast("int")
        row = (pred.groupBy(bins.alias("b"))
               .agg(F.sum(F.when(F.col(LABEL) == 1, 1).otherwise(0)).alias("p"),
                    F.count(F.lit(1)).alias("n"))
               .agg(F.collect_list(F.struct("b", "p", "n")).alias("h")).first())
        pos, neg = np.zeros(HIST_BINS, np.int64), np.zeros(HIST_BINS, np.int64)
        for b in row["h"] or []:
            pos[b["b"]], neg[b["b"]] = b["p"], b["n"] - b["p"]
        return {"pos": pos, "neg": neg}
    if metric in ("rmse", "mae", "r2"):
        err = F.col(PREDICTION) - F.col(LABEL)
        r = pred.agg(F.count(F.lit(1)).alias("n"), F.sum(err * err).alias("sse"),
                     F.sum(F.abs(err)).alias("sae"), F.sum(LABEL).alias("sy"),
                     F.sum(F.col(LABEL) * F.col(LABEL)).alias("syy")).first()
        return {k: (r[k] or 0) for k in ("n", "sse", "sae", "sy", "syy")}
    if metric == "silhouette":
        return {"silhouette": silhouette(pred)}
    raise ValueError(f"unknown metric {metric!r}")


def silhouette(pred: DataFrame) -> float:
    """MLlib's squared-Euclidean silhouette of the clusters (NaN when undefined)."""
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.functions import array_to_vector

    frame = pred.withColumn("_ms_xv", array_to_vector(MODEL_X))
    try:
        return float(ClusteringEvaluator(featuresCol="_ms_xv",
                                         predictionCol=PREDICTION).evaluate(frame))
    except Exception:  # noqa: BLE001 - one cluster only: undefined
        return float("nan")


def add_scores(pred: DataFrame, task: str, labels: list[Any] | None) -> DataFrame:
    """`score` (positive-class probability for two classes, else the top probability; the value
    for regression; the top probability for clustering models that have one) and
    `predicted_label` (the class or cluster as a string)."""
    if task == "regression":
        return pred.withColumn("score", F.col(PREDICTION))
    prob = F.col(PROBABILITY)
    if task == "clustering":
        return pred.withColumn("score", F.array_max(prob)).withColumn(
            "predicted_label", F.col(PREDICTION).cast("int").cast("string"))
    score = prob[1] if len(labels or []) == 2 else F.array_max(prob)
    names = F.array(*[F.lit(str(v)) for v in labels or []])
    return pred.withColumn("score", score).withColumn(
        "predicted_label", F.element_at(names, F.col(PREDICTION).cast("int") + 1))
