"""The predict job: score a feature table with a saved model (imputer + MLlib PipelineModel or
scikit-learn Pipeline).

    predictions/model=<model_id>            key, group, model_id, source, score, probability,
                                            prediction, predicted_label; partitioned by run_date
    predictions_rejected/model=<model_id>   key, source, step, reason of rows not scored

Each is one Delta commit per run. A row already predicted by the model from the same source
(the feature set, or the table path) is not predicted again, so scoring a second table on the
same day keeps the first table's predictions, and a nightly run scores only the new rows.

Rows go through exactly what training applied: the same aggregation, the saved `FittedImputer`
(nothing refitted) and the saved pipeline (a scikit-learn one is broadcast to the executors and
applied in a pandas UDF, giving the same output columns). A row the imputer rejects (or whose
features errored) is written to the rejected table and counted in the manifest, never dropped
silently.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings
from medspark.lake import Lake, local_path, table_of
from medspark.models.missing import FittedImputer
from medspark.spark.runs import job_run
from medspark.spark.train import (
    REJECT_REASON,
    REJECT_STEP,
    accepted,
    add_scores,
    aggregate_series,
    apply_model,
    impute,
    read_features,
)


def resolve_model(lake: Lake, model: str) -> str:
    """The model folder: a path holding metadata.json, or `models/<id>` of the lake."""
    for candidate in (model, f"{lake.path('models')}/{model}"):
        if os.path.isfile(os.path.join(local_path(candidate), "metadata.json")):
            return os.path.abspath(local_path(candidate))
    raise ConfigError(f"model {model!r}: neither a model folder nor {lake.path('models')}/"
                      f"{model} (no metadata.json)")


def load_model(path: str) -> tuple[dict[str, Any], FittedImputer, Any]:
    """(metadata, fitted imputer, model) of a saved model folder: the model is a PipelineModel
    (`kind: mllib`, also models saved before `kind` existed) or a scikit-learn Pipeline."""
    from pyspark.ml import PipelineModel

    from medspark.spark import sklearn_train

    with open(os.path.join(path, "metadata.json")) as fh:
        meta = json.load(fh)
    imputer = FittedImputer.load(os.path.join(path, "imputer"))
    if meta.get("kind", "mllib") == "sklearn":
        return meta, imputer, sklearn_train.load(path, meta)
    return meta, imputer, PipelineModel.load(os.path.join(path, "pipeline"))


def input_frame(spark: SparkSession, lake: Lake, meta: dict[str, Any],
                table: str | None, feature_set: str | None = None) -> tuple[DataFrame, str]:
    """The table to score and its source name: `table`, else the lake's current features of
    `feature_set` or of the model's own feature set (`features-<hash>`)."""
    if table:
        try:
            return spark.read.parquet(table), table
        except Exception as e:  # noqa: BLE001 - AnalysisException: path does not exist
            raise ConfigError(f"table {table} cannot be read: {e}") from None
    source = meta.get("source", {})
    feature_set = feature_set or source.get("feature_set")
    if not feature_set:
        raise ConfigError(f"model {meta['model_id']} was trained on table {source.get('table')}"
                          ": pass the table (or feature set) to score")
    frame, _ = read_features(spark, lake, feature_set)
    return frame, f"features-{feature_set}"


def check_columns(df: DataFrame, meta: dict[str, Any], fitted: FittedImputer) -> None:
    """ConfigError naming every column the model needs that the table lacks."""
    needed = [meta["key_col"], *meta["input_features"], *meta.get("extra_columns", [])]
    if meta["aggregate"] == "none":
        needed += [c for c in fitted.required_columns() if c != meta["group_col"]]
    absent = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if absent:
        raise ConfigError(f"the table lacks column(s) the model {meta['model_id']} needs: "
                          + ", ".join(absent))


def model_rows(df: DataFrame, meta: dict[str, Any]) -> tuple[DataFrame, DataFrame | None]:
    """(rows shaped as in training, rows set aside for a feature error)."""
    key, group, feats = meta["key_col"], meta["group_col"], meta["input_features"]
    errors = None
    if "feature_error" in df.columns:
        errors = df.where(F.col("feature_error").isNotNull()).select(
            key, F.lit("feature_error").alias(REJECT_STEP),
            F.col("feature_error").alias(REJECT_REASON))
        df = df.where(F.col("feature_error").isNull())
    if group not in df.columns:
        df = df.withColumn(group, F.lit(None).cast("string"))
    if meta["aggregate"] != "none":
        return aggregate_series(df, meta["aggregate"], key, group, None, feats), errors
    ids = dict.fromkeys([key, group, *meta.get("extra_columns", [])])
    return df.select(*ids, *[F.col(c).cast("double").alias(c) for c in feats]), errors


def run_predict(spark: SparkSession, settings: Settings, lake_root: str, model: str,
                table: str | None = None, run_date: dt.date | None = None,
                dates: list[dt.date] | None = None, run_id: str | None = None,
                lake: Lake | None = None, feature_set: str | None = None) -> dict:
    """Score the lake's features (or `table`) with `model` (id or folder): the rows this model
    has not yet predicted from that source (`dates`: only features of those ingest dates);
    commit predictions and the rejected rows; write a run manifest."""
    lake = lake or Lake(lake_root)
    meta, fitted, fitted_model = load_model(resolve_model(lake, model))
    model_id, key = meta["model_id"], meta["key_col"]
    with job_run(lake, "predict", run_id) as run:
        raw, source = input_frame(spark, lake, meta, table, feature_set)
        if dates and "ingest_date" in raw.columns:
            raw = raw.where(F.col("ingest_date").isin(list(dates)))
        check_columns(raw, meta, fitted)
        rows, errors = model_rows(raw, meta)
        rows = _not_yet_predicted(spark, lake, rows, model_id, key, source)
        day = (run_date or dt.datetime.now(dt.UTC).date()).isoformat()
        imputed = impute(rows, fitted, meta["input_features"]).cache()
        try:
            n_classes = len(meta.get("labels") or []) if meta["task"] == "classification" else 0
            pred, _ = apply_model(meta.get("kind", "mllib"), fitted_model, accepted(imputed),
                                  meta["features"], meta["task"], n_classes)
            scored = add_scores(pred, meta["algorithm"], meta["task"], meta.get("labels"))
            cols = [key, meta["group_col"], F.lit(model_id).alias("model_id"),
                    F.lit(source).alias("source"), "score",
                    *(["probability"] if "probability" in scored.columns
                      and meta["task"] == "classification" else []),
                    "prediction", *(["predicted_label"] if "predicted_label" in scored.columns
                                    else []),
                    F.lit(dt.date.fromisoformat(day)).alias("run_date")]
            out = scored.select(*cols)
            rejected = imputed.where(F.col(REJECT_STEP).isNotNull()).select(
                key, REJECT_STEP, REJECT_REASON)
            if errors is not None:
                errors = _not_yet_predicted(spark, lake, errors, model_id, key, source)
                rejected = rejected.unionByName(errors)
            rejected = rejected.select(
                F.col(key).cast("string").alias("key"), F.lit(source).alias("source"),
                F.col(REJECT_STEP).cast("string").alias("step"),
                F.col(REJECT_REASON).cast("string").alias("reason"),
                F.lit(dt.date.fromisoformat(day)).alias("run_date"))
            tables = {"predictions": table_of("predictions", model_id),
                      "rejected": table_of("predictions_rejected", model_id)}
            lake.write_table(spark, out, tables["predictions"], run.run_id, "predict",
                             keys=["source", key])
            lake.write_table(spark, rejected, tables["rejected"], run.run_id, "predict",
                             keys=["source", "key"])
            by_step = {r["step"]: r["count"] for r in rejected.groupBy("step").count().collect()}
            counts = {"rows": rows.count(),
                      "predicted": lake.commits[tables["predictions"]]["rows"],
                      "rejected": int(sum(by_step.values())), "rejected_by_step": by_step}
        finally:
            imputed.unpersist()
        return run.manifest(spark, settings, counts, {
            name: {"table": lake.path(t), "partition": {"run_date": day},
                   **lake.commits.get(t, {})} for name, t in tables.items()},
            model_id=model_id, run_date=day, source=source)


def _not_yet_predicted(spark: SparkSession, lake: Lake, rows: DataFrame, model_id: str,
                       key: str, source: str) -> DataFrame:
    """The rows whose key this model has not predicted (or rejected) from `source` yet."""
    for family, col in (("predictions", key), ("predictions_rejected", "key")):
        table = table_of(family, model_id)
        if lake.exists(table):
            done = lake.read(spark, table).where(F.col("source") == source)
            if col in done.columns:
                rows = rows.join(done.select(F.col(col).cast(rows.schema[key].dataType)
                                             .alias(key)).distinct(), key, "left_anti")
    return rows
