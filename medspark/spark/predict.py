"""The predict job: score a feature table with a saved model, whatever its engine.

    predictions/model=<model_id>            key, group, model_id, source, score, probability,
                                            prediction, predicted_label; partitioned by run_date
    predictions_rejected/model=<model_id>   key, source, step, reason of rows not scored

Each is one Delta commit per run. A row already predicted by the model from the same source
(the feature set, or the table path) is not predicted again, so scoring a second table on the
same day keeps the first table's predictions, and a nightly run scores only the new rows.

Rows go through exactly what training applied: the same aggregation, the saved `FittedImputer`
(nothing refitted) and the saved model, loaded by its engine (`kind` in metadata.json:
`mllib`, `sklearn`; `sklearn_per_group`: each row by its group's imputer and model; `torch`:
`medspark.spark.deep_predict`, when medspark deep is installed). A row the imputer rejects (or
whose features errored) is written to the rejected table and counted in the manifest, never
dropped silently. Model folders are read through pyarrow filesystems (any lake URI).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from medspark.config import ConfigError, Settings
from medspark.lake import Lake, table_of
from medspark.models.folder import Folder
from medspark.spark.models.artifacts import Bundle, find_folder, load_bundle
from medspark.spark.models.base import REJECT_REASON, REJECT_STEP
from medspark.spark.models.impute import accepted, impute
from medspark.spark.models.scoring import add_scores
from medspark.spark.runs import job_run
from medspark.spark.train import aggregate_series, read_features

DEEP_PREDICT = "medspark.spark.deep_predict"


def resolve_model(lake: Lake, model: str) -> str:
    """The model folder (path or URI): a folder holding metadata.json, or `models/<id>`."""
    return str(find_folder(Folder.at(lake.path("models")), model))


def load_model(path: str) -> Bundle:
    """metadata, imputer and model of a saved model folder (see `artifacts.load_bundle`)."""
    return load_bundle(Folder.at(path))


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


def check_columns(df: DataFrame, meta: dict[str, Any], required: list[str]) -> None:
    """ConfigError naming every column the model needs that the table lacks."""
    needed = [meta["key_col"], *meta["input_features"], *meta.get("extra_columns", [])]
    if meta["aggregate"] == "none":
        needed += [c for c in required if c != meta["group_col"]]
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
            F.col("feature_error").cast("string").alias(REJECT_REASON))  # all-null: not int
        df = df.where(F.col("feature_error").isNull())
    if group not in df.columns:
        df = df.withColumn(group, F.lit(None).cast("string"))
    extra = list(meta.get("extra_columns", []))
    if meta["aggregate"] != "none":
        return aggregate_series(df, meta["aggregate"], key, group, None, feats, extra), errors
    ids = dict.fromkeys([key, group, *extra])
    return df.select(*ids, *[F.col(c).cast("double").alias(c) for c in feats]), errors


def run_predict(spark: SparkSession, settings: Settings, lake_root: str, model: str,
                table: str | None = None, run_date: dt.date | None = None,
                dates: list[dt.date] | None = None, run_id: str | None = None,
                lake: Lake | None = None, feature_set: str | None = None) -> dict:
    """Score the lake's features (or `table`, or the feature set `feature_set`) with `model`
    (id or folder): the rows this model has not yet predicted from that source (`dates`: only
    features of those ingest dates); commit predictions and the rejected rows; write a run
    manifest."""
    lake = lake or Lake(lake_root)
    bundle = load_bundle(find_folder(Folder.at(lake.path("models")), model))
    meta = bundle.meta
    model_id = meta["model_id"]
    day = dt.date.fromisoformat((run_date or dt.datetime.now(dt.UTC).date()).isoformat())
    with job_run(lake, "predict", run_id) as run:
        if bundle.kind == "torch":
            scored, rejected, source, key, cached = _torch(spark, lake, bundle, table)
        else:
            scored, rejected, source, key, cached = _features(
                spark, lake, bundle, table, dates, feature_set)
        try:
            out = scored.select(key, meta["group_col"], F.lit(model_id).alias("model_id"),
                                F.lit(source).alias("source"), "score",
                                *(["probability"] if meta["task"] == "classification"
                                  and "probability" in scored.columns else []),
                                "prediction", *(["predicted_label"] if "predicted_label"
                                                in scored.columns else []),
                                F.lit(day).alias("run_date"))
            rejected = rejected.select(
                F.col(key).cast("string").alias("key"), F.lit(source).alias("source"),
                F.col(REJECT_STEP).cast("string").alias("step"),
                F.col(REJECT_REASON).cast("string").alias("reason"),
                F.lit(day).alias("run_date"))
            tables = {"predictions": table_of("predictions", model_id),
                      "rejected": table_of("predictions_rejected", model_id)}
            lake.write_table(spark, out, tables["predictions"], run.run_id, "predict",
                             keys=["source", key])
            lake.write_table(spark, rejected, tables["rejected"], run.run_id, "predict",
                             keys=["source", "key"])
            by_step = {r["step"]: r["count"] for r in rejected.groupBy("step").count().collect()}
            predicted = lake.commits[tables["predictions"]]["rows"]
            counts = {"rows": int(predicted or 0) + int(sum(by_step.values())),
                      "predicted": predicted, "rejected": int(sum(by_step.values())),
                      "rejected_by_step": by_step}
        finally:
            if cached is not None:
                cached.unpersist()
        return run.manifest(spark, settings, counts, {
            name: {"table": lake.path(t), "partition": {"run_date": day.isoformat()},
                   **lake.commits.get(t, {})} for name, t in tables.items()},
            model_id=model_id, kind=bundle.kind, run_date=day.isoformat(), source=source)


def _features(spark: SparkSession, lake: Lake, bundle: Bundle, table: str | None,
              dates: list[dt.date] | None, feature_set: str | None
              ) -> tuple[DataFrame, DataFrame, str, str, DataFrame | None]:
    """(scored rows, rejected rows, source, key, cached frame) of a feature model."""
    meta = bundle.meta
    raw, source = input_frame(spark, lake, meta, table, feature_set)
    if dates and "ingest_date" in raw.columns:
        raw = raw.where(F.col("ingest_date").isin(list(dates)))
    key = meta["key_col"]
    required = [meta["per_group"]] if bundle.kind == "sklearn_per_group" else \
        bundle.imputer.required_columns()
    check_columns(raw, meta, required)
    rows, errors = model_rows(raw, meta)
    rows = _not_yet_predicted(spark, lake, rows, meta["model_id"], key, source)
    if errors is not None:
        errors = _not_yet_predicted(spark, lake, errors, meta["model_id"], key, source)
    if bundle.kind == "sklearn_per_group":
        from medspark.spark.models.per_group import predict_rows

        scored, rejected = predict_rows(bundle, rows)
        return scored, _with_errors(rejected, errors), source, key, None
    imputed = impute(rows, bundle.imputer, meta["input_features"]).cache()
    scored = add_scores(bundle.model.transform(accepted(imputed)), meta["task"],
                        meta.get("labels"))
    rejected = imputed.where(F.col(REJECT_STEP).isNotNull()).select(
        meta["key_col"], REJECT_STEP, REJECT_REASON)
    return scored, _with_errors(rejected, errors), source, meta["key_col"], imputed


def _with_errors(rejected: DataFrame, errors: DataFrame | None) -> DataFrame:
    return rejected if errors is None else rejected.unionByName(errors)


def _torch(spark: SparkSession, lake: Lake, bundle: Bundle, table: str | None
           ) -> tuple[DataFrame, DataFrame, str, str, DataFrame | None]:
    """A `kind: torch` model (medspark deep) scored by `deep_predict.predict_frame`."""
    if importlib.util.find_spec(DEEP_PREDICT) is None:
        raise ConfigError(f"model {bundle.meta['model_id']} is a torch model: install "
                          "medspark[deep] to score it")
    deep = importlib.import_module(DEEP_PREDICT)
    model_dir = bundle.folder.local() or str(bundle.folder)
    frame = spark.read.parquet(table) if table else deep.input_frame(spark, lake, model_dir)
    source = table or f"{bundle.meta.get('source', {}).get('table', 'planes')}"
    key, model_id = bundle.meta["key_col"], bundle.meta["model_id"]
    if key in frame.columns:
        frame = _not_yet_predicted(spark, lake, frame, model_id, key, source)
    scored = _not_yet_predicted(spark, lake, deep.predict_frame(spark, model_dir, frame),
                                model_id, key, source)
    bad = deep.unscorable(frame, model_dir)
    rejected = bad.select(F.col(bad.columns[0]).alias(key), F.col("step").alias(REJECT_STEP),
                          F.col("reason").alias(REJECT_REASON))
    return scored, rejected, source, key, None


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
