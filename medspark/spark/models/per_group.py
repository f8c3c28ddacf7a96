"""`train.per_group: COL`: one model per value of COL, each selected, fitted and evaluated on
that value's rows in one Spark task (`groupBy(COL).applyInPandas`, scikit-learn engine;
`medspark.models.per_group.fit_group` does the work).

The tasks return one small row per group (its winner, pickled with its imputer; its CV scores;
its held-out metrics) and the group's scored held-out rows, which stay in Spark: the pooled
held-out metrics rest on a bounded sample of them (`evaluation.bounded_sample`). The model
folder holds `group_models.parquet` (one row per value, with the pickled model) instead of one
pipeline; `medspark predict` scores each row with its group's imputer and model, and rejects
rows of a value without a model (`no_group_model`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.config import ConfigError, Settings
from medspark.jsonable import finite, short_hash
from medspark.lake import Lake
from medspark.models.algorithms import is_estimator_path, larger_is_better, param_grid
from medspark.models.config import TrainSettings
from medspark.models.counterparts import sklearn_counterpart
from medspark.models.folder import Folder
from medspark.models.per_group import GroupSpec, fit_group, score_rows
from medspark.spark.models.artifacts import METADATA, METRICS, Bundle
from medspark.spark.models.base import GROUP, LABEL, PREDICTION, PROBABILITY, scored_columns
from medspark.spark.models.evaluation import bounded_sample, test_metrics, write_plots
from medspark.spark.models.folds import group_column
from medspark.spark.models.scoring import add_scores

GROUP_MODELS = "group_models.parquet"
KIND = "sklearn_per_group"


def _specs(cfg: TrainSettings) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for cand in cfg.candidates():
        for params in param_grid(cand.params, cand.grid):
            if not is_estimator_path(cand.algorithm):
                path, why = sklearn_counterpart(cand.algorithm, params)
                if path is None:
                    raise ConfigError(f"train.per_group fits scikit-learn estimators: "
                                      f"{cand.algorithm} {params}: {why}")
            out.append((cand.algorithm, params))
    return out


def _schema(frame: DataFrame, column: str, key: str, group: str) -> T.StructType:
    types = {f.name: f.dataType for f in frame.schema.fields}
    return T.StructType([
        T.StructField(column, types[column]), T.StructField("_ms_row", T.StringType()),
        T.StructField("n_rows", T.LongType()), T.StructField("best", T.LongType()),
        T.StructField("model", T.BinaryType()), T.StructField("cv", T.StringType()),
        T.StructField("error", T.StringType()), T.StructField(key, types[key]),
        T.StructField(GROUP, T.StringType()), T.StructField(group, types[group]),
        T.StructField(LABEL, T.DoubleType()), T.StructField(PREDICTION, T.DoubleType()),
        T.StructField(PROBABILITY, T.ArrayType(T.DoubleType()))])


def train_per_group(spark: SparkSession, settings: Settings, lake: Lake, run: Any,
                    cfg: TrainSettings, data: Any) -> dict:
    """The per-group train run (module doc); returns the manifest."""
    from medspark.spark.train import (
        check_algorithms,
        fingerprint_aggregates,
        fingerprint_of,
        versions,
    )

    column, key = cfg.per_group, data.key
    n_classes = len(data.labels or []) if cfg.task == "classification" else 0
    check_algorithms(cfg, n_classes)
    if cfg.task == "clustering":
        raise ConfigError("train.per_group needs a label (classification or regression)")
    # the values, and the data fingerprint from the same pass (one part per value)
    values = (data.frame.groupBy(column).agg(*fingerprint_aggregates(data.hashed))
              .limit(cfg.per_group_max + 1).collect())
    if len(values) > cfg.per_group_max:
        raise ConfigError(f"train.per_group={column} has more than {cfg.per_group_max} values "
                          "(train.per_group_max)")
    fingerprint = fingerprint_of(values)
    rows = data.frame.withColumn(GROUP, group_column(data.group, key))
    spec = GroupSpec(key, GROUP, LABEL, data.features, _specs(cfg),
                     cfg.missing_plan([key], [GROUP, data.group, LABEL, column, *data.extra,
                                              data.label]),
                     cfg.task, n_classes, cfg.metric(), larger_is_better(cfg.metric()),
                     cfg.selection.folds, cfg.test_size, cfg.seed, cfg.standardize)
    schema = _schema(rows, column, key, data.group)
    names, group = schema.fieldNames(), data.group  # the closure must not hold a DataFrame
    bc = spark.sparkContext.broadcast(spec)

    def one(pdf: pd.DataFrame) -> pd.DataFrame:
        the = bc.value
        res = fit_group(pdf.drop(columns=[column]), the)
        head = {column: pdf[column].iloc[0], "_ms_row": "model", "n_rows": res.n_rows,
                "best": res.best, "model": res.model,
                "cv": json.dumps(finite(res.cv), default=str), "error": res.error}
        out = [pd.DataFrame([head])]
        if res.test is not None and len(res.test):
            test = res.test.copy()
            test[column], test["_ms_row"] = pdf[column].iloc[0], "prediction"
            test[group] = pdf.set_index(key).loc[test[key], group].to_numpy()
            out.append(test)
        frame = pd.concat(out, ignore_index=True)
        for name in names:
            if name not in frame.columns:
                frame[name] = None
        frame[PROBABILITY] = [None if v is None or isinstance(v, float) else list(v)
                              for v in frame[PROBABILITY]]  # concat leaves NaN for "none"
        return frame[names]

    result = rows.groupBy(column).applyInPandas(one, schema).cache()
    try:
        found = result.where(F.col("_ms_row") == "model").drop(
            key, GROUP, data.group, LABEL, PREDICTION, PROBABILITY).collect()
        preds = add_scores(result.where(F.col("_ms_row") == "prediction"), cfg.task,
                           data.labels)
        n_scored = preds.count()
        sample, sampling = bounded_sample(
            preds.select(*scored_columns(key, cfg.task)), n_scored,
            cfg.eval_max_rows, cfg.seed)
    finally:
        result.unpersist()
    ok = [r for r in found if r["model"] is not None]
    if not ok:
        raise ConfigError("train.per_group: no group could be fitted: " + "; ".join(
            f"{column}={r[column]}: {r['error']}" for r in found))
    metrics = test_metrics(sample, cfg.task, data.labels, GROUP, cfg.n_boot, cfg.seed) \
        if len(sample) else {}
    model_id = f"pergroup-{short_hash({'config': cfg.hashed(), 'data': fingerprint})}"
    folder = Folder.at(lake.path("models")).child(model_id)
    folder.remove()
    folder.make()
    table = pd.DataFrame([{column: r[column], "n_rows": r["n_rows"], "cv": r["cv"],
                           "algorithm": None if r["best"] is None else spec.candidates[
                               r["best"]][0],
                           "params": None if r["best"] is None else json.dumps(
                               spec.candidates[r["best"]][1], sort_keys=True, default=str),
                           "error": r["error"], "model": r["model"]}
                          for r in sorted(found, key=lambda r: str(r[column]))])
    folder.write_parquet(GROUP_MODELS, table)
    plots = write_plots(folder, sample, cfg.task, data.labels, None, [])
    counts = {**data.counts, "rows": fingerprint["rows"], "groups": len(found),
              "groups_fitted": len(ok), "test_rows_scored": n_scored}
    folder.write_json(METRICS, {
        "model_id": model_id, "task": cfg.task, "kind": KIND, "per_group": column,
        "test": metrics, "counts": counts, "evaluation": sampling,
        "groups": table.drop(columns="model").to_dict("records")})
    meta = {"model_id": model_id, "kind": KIND, "task": cfg.task, "algorithm": "per_group",
            "per_group": column, "label_col": data.label, "labels": data.labels,
            "group_col": data.group, "key_col": key, "id_col": cfg.id_col,
            "aggregate": data.aggregate, "series_col": cfg.series_col,
            "input_features": data.features, "features": data.features,
            "extra_columns": data.extra, "seed": cfg.seed,
            "config": cfg.model_dump(mode="json"), "data_fingerprint": fingerprint,
            "source": data.source, "train_run_id": run.run_id, "model_file": GROUP_MODELS,
            "plots": plots, "versions": versions(),
            "created_at": dt.datetime.now(dt.UTC).isoformat()}
    folder.write_json(METADATA, meta)
    return run.manifest(spark, settings, counts, {"model": str(folder)}, model_id=model_id,
                        task=cfg.task, per_group=column,
                        test_metrics={k: v.get("value") for k, v in metrics.items()},
                        evaluation=sampling)


def predict_rows(bundle: Bundle, rows: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(scored rows, rejected rows) of a per-group model: each row by its group's model."""
    from medspark.spark.models.base import REJECT_REASON, REJECT_STEP

    meta = bundle.meta
    column, feats, task = meta["per_group"], meta["input_features"], meta["task"]
    n_classes = len(meta.get("labels") or []) if task == "classification" else 0
    table = bundle.folder.read_parquet(GROUP_MODELS)
    models = {v: bytes(m) for v, m in zip(table[column], table["model"], strict=True)
              if m is not None}
    bc = rows.sparkSession.sparkContext.broadcast(models)
    schema = T.StructType([*rows.schema.fields, T.StructField(PREDICTION, T.DoubleType()),
                           T.StructField(PROBABILITY, T.ArrayType(T.DoubleType())),
                           T.StructField(REJECT_STEP, T.StringType()),
                           T.StructField(REJECT_REASON, T.StringType())])
    cols = schema.fieldNames()

    def batches(it: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in it:
            yield score_rows(bc.value, pdf, column, feats, task, n_classes)[cols]

    out = rows.mapInPandas(batches, schema)
    scored = add_scores(out.where(F.col(REJECT_STEP).isNull()), task, meta.get("labels"))
    rejected = out.where(F.col(REJECT_STEP).isNotNull()).select(
        meta["key_col"], REJECT_STEP, REJECT_REASON)
    return scored, rejected
