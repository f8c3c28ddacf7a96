"""The train job: grouped CV model selection over MLlib and scikit-learn candidates, refit,
held-out evaluation.

Data: `features/feature_set=<hash>/` of a lake (label and patient already in the rows) or any
Parquet table of numeric features. Rows are split by patient (`train_test_split_grouped`), the
training split into grouped stratified folds (`grouped_stratified_kfold`); a fold id per group is
broadcast-joined to the rows and each fold is a DataFrame filter. The missing-value plan is
fitted on the training rows of each fold (and finally of the whole training split) on the driver
and applied by Spark (`mapInPandas`; `applyInPandas` per group for interpolation). scikit-learn
candidates (dotted import paths) get the same imputed fold rows, collected, and are fitted as
Spark tasks (`medspark.spark.sklearn_train`); both kinds are scored by the same MLlib evaluator.
Output:

    models/<model_id>/ pipeline/ | sklearn_pipeline.joblib, imputer/ metrics.json
                       leaderboard.parquet metadata.json *.png

`model_id` = `<algorithm>-<sha256 of config + data fingerprint + seed>[:16]` (scikit-learn:
`sklearn-<class name>-...`): deterministic, so the same config, data and seed give the same id
(the folder is replaced) and the same metrics.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medspark.config import ConfigError, Settings
from medspark.lake import Lake, is_local, local_path, new_run_id, table_of
from medspark.models.config import TrainSettings
from medspark.models.missing import FittedImputer, Interpolate, MissingValuePlan
from medspark.models.mllib import (
    FEATURES,
    LABEL,
    build_pipeline,
    evaluate,
    final_features_col,
    get_algorithm,
)
from medspark.models.sklearn_candidates import estimator_weights, is_estimator_path
from medspark.spark import sklearn_train
from medspark.spark.sklearn_jobs import predict_with_broadcast
from medspark.versions import library_versions

log = logging.getLogger(__name__)
FOLD, REJECT_STEP, REJECT_REASON = "_ms_fold", "_ms_reject_step", "_ms_reject_reason"
NUMERIC = (T.DoubleType, T.FloatType, T.IntegerType, T.LongType, T.ShortType, T.DecimalType)


# ------------------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """The modelling frame: key, group, encoded label, features (+ columns the imputer needs)."""

    frame: DataFrame
    key: str
    group: str
    label: str | None
    features: list[str]
    extra: list[str]
    labels: list[Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def train_settings(settings: Settings, train: TrainSettings | None) -> TrainSettings:
    """`train` if given, else `settings.train` (once wired), else the defaults."""
    return train or getattr(settings, "train", None) or TrainSettings()


def read_features(spark: SparkSession, lake: Lake, feature_set: str | None,
                  version: int | str | None = None) -> tuple[DataFrame, dict[str, Any]]:
    """One feature set of the lake (the configured one or the only one) at its table's
    current version (or `version`: a number or a timestamp), and where it came from."""
    sets = lake.configurations("features")
    if feature_set is None:
        if len(sets) != 1:
            raise ConfigError(f"{lake.path('features')} holds feature sets {sets}: set "
                              "train.feature_set" if sets else f"{lake.path('features')} not "
                              "found: run `medspark features` first")
        feature_set = sets[0]
    elif feature_set not in sets:
        raise ConfigError(f"feature set {feature_set} is not in {lake.path('features')} "
                          f"(it holds {sets}): run `medspark features` first")
    table = table_of("features", feature_set)
    try:
        snap = lake.snapshot(table, version)
    except Exception as e:  # noqa: BLE001 - no such version / timestamp before the table
        raise ConfigError(f"--as-of {version}: {lake.path(table)} has no such version "
                          f"({str(e).splitlines()[0]})") from None
    frame = lake.read(spark, table, snap=snap)
    return frame, {"lake": lake.root, "features": lake.path(table),
                   "feature_set": feature_set, "features_version": snap.version}


def read_source(spark: SparkSession, lake: Lake | None, table: str | None,
                train: TrainSettings, as_of: int | str | None = None
                ) -> tuple[DataFrame, dict[str, Any]]:
    """The raw table and a description of where it came from (for the lake's features: the
    feature set and the exact table version read)."""
    if table:
        try:
            return spark.read.parquet(table), {"table": table}
        except Exception as e:  # noqa: BLE001 - AnalysisException: path does not exist
            raise ConfigError(f"table {table} cannot be read: {e}") from None
    assert lake is not None
    return read_features(spark, lake, train.feature_set, as_of)


def choose_features(df: DataFrame, train: TrainSettings, reserved: list[str],
                    lake_mode: bool) -> list[str]:
    """Feature columns: `train.features` names/globs, else every feature (lake: the radiomics
    columns; table: every numeric column but the key, group and label)."""
    numeric = [f.name for f in df.schema.fields
               if isinstance(f.dataType, NUMERIC) and f.name not in reserved]
    if train.features:
        out = [c for c in numeric if any(fnmatch.fnmatchcase(c, p) for p in train.features)]
        absent = [p for p in train.features if not any(fnmatch.fnmatchcase(c, p) for c in out)]
        if absent:
            raise ConfigError(f"train.features: no numeric column matches {absent}")
        return out
    if lake_mode:
        from medspark.features import feature_names

        known = set(feature_names(None))
        numeric = [c for c in numeric if c in known]
    if not numeric:
        raise ConfigError("no numeric feature column in the table")
    return numeric


def plan_columns(plan: MissingValuePlan) -> list[str]:
    """Columns interpolation rules need besides the features (order and group keys)."""
    cols: list[str] = []
    for rule in plan.rules:
        if isinstance(rule, Interpolate):
            cols += [rule.order_by, *rule.group_by]
    return list(dict.fromkeys(cols))


def aggregate_series(df: DataFrame, how: str, series: str, group: str, label: str | None,
                     features: list[str]) -> DataFrame:
    """One row per series: mean/max of each feature (NaN/null ignored), group and label."""
    fn = F.avg if how == "series_mean" else F.max
    aggs = [fn(F.nanvl(F.col(c).cast("double"), F.lit(None).cast("double"))).alias(c)
            for c in features]
    keep = [F.max(group).alias(group)] + ([F.max(label).alias(label)] if label else [])
    return df.groupBy(series).agg(*keep, *aggs).sortWithinPartitions(series)


def missing_columns(df: DataFrame, needed: list[str]) -> list[str]:
    return [c for c in needed if c not in df.columns]


def prepare(spark: SparkSession, train: TrainSettings, lake: Lake | None, table: str | None,
            label: str | None, id_col: str, group_col: str,
            as_of: int | str | None = None) -> TrainData:
    """Read, select and (optionally) aggregate the rows; encode the label as `_ms_label`."""
    raw, source = read_source(spark, lake, table, train, as_of)
    counts: dict[str, int] = {}
    if "feature_error" in raw.columns:
        counts["feature_error_rows"] = raw.where(F.col("feature_error").isNotNull()).count()
        raw = raw.where(F.col("feature_error").isNull())
    label = label if train.task != "clustering" else None
    plan = train.missing_plan([], [])
    extra = [c for c in plan_columns(plan) if c != id_col]
    key = train.series_col if train.aggregate != "none" else id_col
    needed = [key, group_col, *([label] if label else []), *extra]
    absent = missing_columns(raw, needed)
    if absent:
        raise ConfigError(f"column(s) {absent} not in the training table")
    reserved = list({id_col, group_col, key, *([label] if label else []), *extra,
                     "slice_position", "plane_index"} if lake else
                    {id_col, group_col, key, *([label] if label else []), *extra})
    feats = choose_features(raw, train, reserved, lake_mode=table is None)
    if train.aggregate != "none":
        if extra:
            raise ConfigError("interpolation rules need plane rows: use aggregate: none")
        df = aggregate_series(raw, train.aggregate, key, group_col, label, feats)
    else:
        ids = dict.fromkeys([key, group_col, *([label] if label else []), *extra])
        df = raw.select(*ids, *[F.col(c).cast("double").alias(c) for c in feats])
    counts["rows_read"] = df.count()
    labels = None
    if label:
        counts["rows_without_label"] = df.where(F.col(label).isNull()).count()
        df = df.where(F.col(label).isNotNull())
        df, labels = encode_label(spark, df, label, train)
    return TrainData(df, key, group_col, label, feats, extra, labels, source, counts)


def encode_label(spark: SparkSession, df: DataFrame, label: str,
                 train: TrainSettings) -> tuple[DataFrame, list[Any] | None]:
    """`_ms_label` double: the value (regression) or the class index (sorted; positive last)."""
    if train.task == "regression":
        return df.withColumn(LABEL, F.col(label).cast("double")), None
    values = sorted(r[0] for r in df.select(label).distinct().collect())
    if train.positive_label is not None:
        pos = [v for v in values if str(v) == str(train.positive_label)]
        if not pos:
            raise ConfigError(f"positive_label {train.positive_label!r} not among {values}")
        values = [v for v in values if v != pos[0]] + pos
    if train.task == "classification" and len(values) < 2:
        raise ConfigError(f"label {label!r} has {len(values)} class(es): {values}")
    index = spark.createDataFrame(
        [(v, float(i)) for i, v in enumerate(values)],
        T.StructType([T.StructField(label, df.schema[label].dataType),
                      T.StructField(LABEL, T.DoubleType())]))
    return df.join(F.broadcast(index), label), [_py(v) for v in values]


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


# ----------------------------------------------------------------------------------- impute
def impute(df: DataFrame, fitted: FittedImputer, features: list[str]) -> DataFrame:
    """Apply the fitted plan with Spark; rows it rejects (or leaves NaN in a model feature)
    keep their values and get `_ms_reject_step` / `_ms_reject_reason` (null when accepted)."""
    cols = df.columns
    schema = T.StructType([*(T.StructField(f.name, T.DoubleType()) if f.name in features else f
                             for f in df.schema.fields),
                           T.StructField(REJECT_STEP, T.StringType()),
                           T.StructField(REJECT_REASON, T.StringType())])
    dropped = set(fitted.train_report.columns_dropped if fitted.train_report else [])
    model_cols = [c for c in features if c not in dropped]

    def one(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.reset_index(drop=True)
        res = fitted.transform(pdf)
        out = pdf.copy()
        filled = res.frame
        for c in model_cols:
            out.loc[filled.index, c] = filled[c].to_numpy(dtype=float)
        out[REJECT_STEP], out[REJECT_REASON] = None, None
        rej = res.rejected.groupby(level=0).first()  # the first step that rejected a row
        out.loc[rej.index, REJECT_STEP] = rej["step"].astype(str)
        out.loc[rej.index, REJECT_REASON] = rej["reason"].astype(str)
        left = out.loc[out[REJECT_STEP].isna(), model_cols].isna()
        bad = left.any(axis=1)
        if bad.any():
            out.loc[bad[bad].index, REJECT_STEP] = "nan_after_imputation"
            out.loc[bad[bad].index, REJECT_REASON] = [
                "NaN left in " + ", ".join(left.columns[row].tolist()[:5])
                for row in left[bad].to_numpy()]
        return out[[*cols, REJECT_STEP, REJECT_REASON]]

    def batches(it):
        for pdf in it:
            yield one(pdf)

    groups = [c for step in fitted.plan.rules if isinstance(step, Interpolate)
              for c in step.group_by]
    if groups:  # interpolation needs every row of a group in one pandas frame
        return df.groupBy(*dict.fromkeys(groups)).applyInPandas(one, schema) \
                 .sortWithinPartitions(cols[0])
    return df.mapInPandas(batches, schema)


def model_features(fitted: FittedImputer, features: list[str]) -> list[str]:
    dropped = set(fitted.train_report.columns_dropped if fitted.train_report else [])
    return [c for c in features if c not in dropped]


def accepted(df: DataFrame) -> DataFrame:
    return df.where(F.col(REJECT_STEP).isNull()).drop(REJECT_STEP, REJECT_REASON)


# ------------------------------------------------------------------------------------ splits
def assign_folds(spark: SparkSession, data: TrainData, train: TrainSettings,
                 keys: pd.DataFrame) -> tuple[DataFrame, pd.DataFrame, dict[str, Any]]:
    """Add `_ms_fold` (-1 = test, 0..k-1 = CV fold) by broadcast join on the group id."""
    from medspark.models.splits import (
        assert_no_leakage,
        grouped_stratified_kfold,
        train_test_split_grouped,
    )

    label = LABEL if data.label and train.task == "classification" else None
    task = "classification" if label else "regression"
    k = train.selection.folds
    try:
        split = train_test_split_grouped(keys, data.group, label, train.test_size, train.seed,
                                         task)
        rest = keys.iloc[split.train].reset_index(drop=True)
        folds = grouped_stratified_kfold(rest, data.group, label, k, train.seed, task)
    except ValueError as e:  # too few patients / a class with one patient
        raise ConfigError(f"cannot split the {len(keys)} rows by {data.group!r}: {e}") from None
    assert_no_leakage(keys, data.group, split)
    assert_no_leakage(rest, data.group, folds)
    fold_of = {g: -1 for g in split.test_groups}
    for i, f in enumerate(folds):
        fold_of.update({g: i for g in f.test_groups})
    gtype = data.frame.schema[data.group].dataType
    table = spark.createDataFrame(
        [(_py(g), int(f)) for g, f in fold_of.items()],
        T.StructType([T.StructField(data.group, gtype), T.StructField(FOLD, T.IntegerType())]))
    keys = keys.assign(**{FOLD: keys[data.group].map(fold_of).astype(int)})
    info = {"test_groups": len(split.test_groups), "train_groups": len(split.train_groups),
            "folds": k, "rows_by_fold": {str(i): int((keys[FOLD] == i).sum())
                                         for i in range(-1, k)}}
    return data.frame.join(F.broadcast(table), data.group), keys, info


# ------------------------------------------------------------------------------------ scores
def add_scores(pred: DataFrame, algorithm: str, task: str, labels: list[Any] | None
               ) -> DataFrame:
    """`score` (positive-class probability / margin sigmoid / value / top probability),
    `probability` array (classification), `predicted_label` (string class or cluster)."""
    from pyspark.ml.functions import vector_to_array

    del algorithm  # every classifier but LinearSVC has `probability`
    binary = labels is not None and len(labels) == 2
    if task == "regression":
        return pred.withColumn("score", F.col("prediction"))
    if task == "clustering":
        score = (F.array_max(vector_to_array("probability")) if "probability" in pred.columns
                 else F.lit(None).cast("double"))
        return pred.withColumn("score", score).withColumn(
            "predicted_label", F.col("prediction").cast("int").cast("string"))
    if "probability" in pred.columns:
        prob = vector_to_array("probability")
    else:  # LinearSVC: margins only; the sigmoid keeps prediction == (score >= 0.5)
        raw = vector_to_array("rawPrediction")
        p1 = 1 / (1 + F.exp(-raw[1]))
        prob = F.array(1 - p1, p1)
    pred = pred.withColumn("probability", prob)
    score = F.col("probability")[1] if binary else F.array_max("probability")
    names = F.array(*[F.lit(str(v)) for v in labels or []])
    return pred.withColumn("score", score).withColumn(
        "predicted_label", F.element_at(names, F.col("prediction").cast("int") + 1))


# ---------------------------------------------------------------------------------- selection
def cross_validate(data: TrainData, train: TrainSettings, framed: DataFrame,
                   pdf: pd.DataFrame, plan: MissingValuePlan, n_classes: int) -> pd.DataFrame:
    """Leaderboard rows: candidate, params, metric per fold, mean, sd (fold imputers fitted on
    the fold's training rows only). MLlib candidates are fitted fold by fold; scikit-learn ones
    get each fold's same imputed rows and run as one Spark task per (grid point, fold)."""
    from medspark.models.mllib import param_grid

    metric, k = train.metric(), train.selection.folds
    combos = [(c.algorithm, p) for c in train.candidates() for p in param_grid(c.params, c.grid)]
    sk = [i for i, (name, _) in enumerate(combos) if is_estimator_path(name)]
    scores = [[float("nan")] * k for _ in combos]
    errors: list[str | None] = [None] * len(combos)
    label = LABEL if data.label and train.task != "clustering" else None
    sk_folds = []
    for fold in range(k):
        fitted = plan.fit(pdf[(pdf[FOLD] >= 0) & (pdf[FOLD] != fold)].drop(columns=FOLD))
        feats = model_features(fitted, data.features)
        part = impute(framed.where(F.col(FOLD) >= 0), fitted, data.features)
        part = accepted(part).cache()
        tr, va = part.where(F.col(FOLD) != fold), part.where(F.col(FOLD) == fold)
        for i, (name, params) in enumerate(combos):
            if i in sk:
                continue
            pipe = build_pipeline(name, params, feats, standardize=train.standardize,
                                  n_classes=n_classes, seed=train.seed)
            pred = pipe.fit(tr).transform(va)
            scores[i][fold] = evaluate(pred, metric, final_features_col(pipe))
            log.info("fold %d %s %s: %s=%.4f", fold, name, params, metric, scores[i][fold])
        if sk:
            sk_folds.append(sklearn_train.fold_data(part, data.key, label, FOLD, fold, feats,
                                                    train.sklearn_max_rows))
        part.unpersist()
    if sk:
        sk_scores, sk_errors = sklearn_train.cv_scores(
            framed.sparkSession, sk_folds, [combos[i] for i in sk], metric=metric,
            task=train.task, n_classes=n_classes, standardize=train.standardize,
            seed=train.seed)
        for j, i in enumerate(sk):
            scores[i], errors[i] = sk_scores[j], sk_errors[j]
    return leaderboard_frame(combos, scores, errors, metric)


def leaderboard_frame(combos: list[tuple[str, dict[str, Any]]], scores: list[list[float]],
                      errors: list[str | None], metric: str) -> pd.DataFrame:
    """One row per (algorithm, params), best first (NaN means last, ties in config order); a
    candidate with a failed fold has NaN mean and its first error."""
    from medspark.models.mllib import larger_is_better

    rows = []
    for (name, params), vals, error in zip(combos, scores, errors, strict=True):
        arr = np.asarray(vals, dtype=float)
        ok = arr[~np.isnan(arr)] if error is None else arr[:0]
        rows.append({"algorithm": name, "kind": "sklearn" if is_estimator_path(name) else "mllib",
                     "params": json.dumps(params, sort_keys=True, default=str),
                     "metric": metric, "mean": float(ok.mean()) if len(ok) else float("nan"),
                     "sd": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"),
                     "n_folds": int(len(ok)), "fold_scores": arr.tolist(), "error": error})
    board = pd.DataFrame(rows)
    sign = -1.0 if larger_is_better(metric) else 1.0
    board["_order"] = (sign * board["mean"]).fillna(np.inf)
    board = board.sort_values("_order", kind="stable").drop(columns="_order")
    return board.reset_index(drop=True).assign(rank=lambda b: np.arange(1, len(b) + 1))


def fold_frame(framed: DataFrame, data: TrainData, test: bool = False) -> pd.DataFrame:
    """The training-split (or test) rows on the driver, for fitting imputers and reports."""
    cols = [data.key, data.group, *([LABEL] if data.label else []), *data.extra,
            *data.features, FOLD]
    side = F.col(FOLD) == -1 if test else F.col(FOLD) >= 0
    pdf = framed.where(side).select(*dict.fromkeys(cols)).toPandas()
    return pdf.sort_values(data.key, kind="stable").reset_index(drop=True)


# -------------------------------------------------------------------------------- evaluation
def test_metrics(pdf: pd.DataFrame, task: str, labels: list[Any] | None, group: str,
                 train: TrainSettings, features: np.ndarray | None) -> dict[str, Any]:
    """medspark.models.metrics on the collected test rows (patient-grouped bootstrap)."""
    from medspark.models.metrics import (
        bootstrap,
        classification_metrics,
        clustering_metrics,
        regression_metrics,
    )

    kw = {"groups": pdf[group].to_numpy(), "n_boot": train.n_boot, "seed": train.seed}
    if task == "regression":
        return regression_metrics(pdf[LABEL], pdf["prediction"], **kw)
    if task == "clustering":
        return clustering_metrics(features, pdf["prediction"].astype(int), noise_label=None,
                                  seed=train.seed)
    y, p = pdf[LABEL].to_numpy().astype(int), pdf["prediction"].to_numpy().astype(int)
    if len(labels or []) == 2:
        return classification_metrics(y, pdf["score"], y_pred=p, pos_label=1, **kw)
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    out = bootstrap(lambda i: {"accuracy": float(np.mean(y[i] == p[i])),
                               "balanced_accuracy": balanced_accuracy_score(y[i], p[i])},
                    len(y), **kw)
    out["confusion_matrix"] = {"value": confusion_matrix(y, p, labels=range(len(labels or [])))
                               .tolist(), "labels": labels, "ci_low": None, "ci_high": None,
                               "n_boot_used": 0}
    return out


def write_plots(out: str, pdf: pd.DataFrame, task: str, labels: list[Any] | None,
                weights: tuple[str, list[float]] | None, feats: list[str]) -> list[str]:
    """ROC, PR, calibration, confusion (binary) / confusion (multiclass) / importances."""
    from medspark.models import plots

    paths = []
    if task == "classification" and labels:
        y, p = pdf[LABEL].astype(int), pdf["prediction"].astype(int)
        if len(labels) == 2 and y.nunique() == 2:
            paths += [plots.plot_roc(y, pdf["score"], f"{out}/roc.png", pos_label=1),
                      plots.plot_pr(y, pdf["score"], f"{out}/pr.png", pos_label=1),
                      plots.plot_calibration(y, pdf["score"], f"{out}/calibration.png",
                                             pos_label=1)]
        names = [str(v) for v in labels]
        paths.append(plots.plot_confusion_matrix(
            [names[i] for i in y], [names[i] for i in p], f"{out}/confusion.png", labels=names))
    if weights is not None:
        kind, vals = weights
        paths.append(plots.plot_feature_importance(
            feats, vals, f"{out}/feature_{kind}.png",
            title="Feature importance" if kind == "importance" else "Coefficients"))
    return [os.path.basename(str(p)) for p in paths]


# ------------------------------------------------------------------------------------- ids
def data_fingerprint(df: DataFrame) -> dict[str, Any]:
    """Row count and an order-free xor of row hashes: changes when any value changes."""
    row = df.agg(F.count(F.lit(1)).alias("n"),
                 F.bit_xor(F.xxhash64(*df.columns)).alias("h")).first()
    return {"rows": int(row["n"]), "hash": int(row["h"] or 0)}


def sha(doc: Any, n: int = 16) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def versions() -> dict[str, Any]:
    import joblib
    import pyspark
    import scipy
    import sklearn

    return {**library_versions(), "pyspark_runtime": pyspark.__version__,
            "scikit-learn": sklearn.__version__, "scipy": scipy.__version__,
            "joblib": joblib.__version__}


# -------------------------------------------------------------------------------------- job
def run_train(spark: SparkSession, settings: Settings, lake_root: str | None = None,
              table: str | None = None, label: str | None = None, task: str | None = None,
              id_col: str | None = None, group_col: str | None = None,
              train: TrainSettings | None = None, as_of: int | str | None = None) -> dict:
    """Select, refit and evaluate a model; write `models/<model_id>/` and a run manifest.

    `lake_root` is required (models/ and _runs/ live there); `table` trains on any Parquet
    table instead of the lake's features/. Arguments left None come from `train:` settings.
    """
    started, run_id = time.time(), new_run_id("train")
    cfg = train_settings(settings, train)
    upd = {k: v for k, v in {"task": task, "label": label, "id_col": id_col,
                             "group_col": group_col}.items() if v is not None}
    try:
        cfg = TrainSettings.model_validate({**cfg.model_dump(), **upd}) if upd else cfg
    except ValidationError as e:
        raise ConfigError(f"train settings with {upd}: {e}") from None
    if not lake_root:
        raise ConfigError("train needs --lake (models/ are written there)")
    lake = Lake(lake_root)
    if not is_local(lake.root):
        raise ConfigError("train writes models/ with local file I/O: use a local lake")
    data = prepare(spark, cfg, None if table else lake, table, cfg.label, cfg.id_col,
                   cfg.group_col, as_of)
    n_classes = len(data.labels or []) if cfg.task == "classification" else 0
    check_algorithms(cfg, n_classes)
    keys = data.frame.select(*dict.fromkeys([data.key, data.group,
                                             *([LABEL] if data.label else [])])).toPandas()
    keys = keys.sort_values(data.key, kind="stable").reset_index(drop=True)
    framed, keys, split_info = assign_folds(spark, data, cfg, keys)
    sk = [c.algorithm for c in cfg.candidates() if is_estimator_path(c.algorithm)]
    too_many = sk and sklearn_train.too_many_rows(int((keys[FOLD] >= 0).sum()),
                                                  cfg.sklearn_max_rows, sk)
    if too_many:
        raise ConfigError(too_many)
    framed = framed.cache()
    try:
        result = fit_and_evaluate(spark, data, cfg, framed, keys, n_classes, lake)
    finally:
        framed.unpersist()
    out_dir, model_id = result.pop("out_dir"), result["model_id"]
    manifest_extra = {"model_id": model_id, "task": cfg.task, "counts": result["counts"],
                      "split": split_info, "best": result["best"],
                      "test_metrics": {k: v.get("value") for k, v in result["metrics"].items()},
                      "outputs": {"model": out_dir}}
    meta = {**result["metadata"], "split": split_info, "train_run_id": run_id}
    with open(f"{out_dir}/metadata.json", "w") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True, default=str)
    from medspark.spark.runs import job_manifest

    return job_manifest(spark, lake, "train", run_id, started, settings, manifest_extra)


def check_algorithms(cfg: TrainSettings, n_classes: int) -> None:
    for cand in cfg.candidates():
        if is_estimator_path(cand.algorithm):
            continue
        algo = get_algorithm(cand.algorithm)
        if algo.binary_only and n_classes != 2:
            raise ConfigError(f"{algo.name} is binary only; the label has {n_classes} classes")
    if cfg.metric() in ("roc_auc", "pr_auc") and n_classes != 2:
        raise ConfigError(f"metric {cfg.metric()} needs a binary label ({n_classes} classes)")


def fit_and_evaluate(spark: SparkSession, data: TrainData, cfg: TrainSettings,
                     framed: DataFrame, keys: pd.DataFrame, n_classes: int, lake: Lake) -> dict:
    """CV leaderboard → refit best on the training split → test metrics, plots, artefacts."""
    plan = cfg.missing_plan([data.key], [data.group, LABEL, FOLD, *data.extra,
                                         *([data.label] if data.label else [])])
    train_pdf = fold_frame(framed, data)
    board = cross_validate(data, cfg, framed, train_pdf, plan, n_classes)
    best = board.iloc[0]
    if best["error"] is not None:
        raise ConfigError("every candidate failed: " + "; ".join(
            f"{r.algorithm} {r.params}: {r.error}" for r in board.itertuples()))
    params, kind = json.loads(best["params"]), best["kind"]
    fitted, train_res = plan.fit_transform(train_pdf.drop(columns=FOLD))
    test_report = fitted.transform(fold_frame(framed, data, test=True).drop(columns=FOLD)).report
    feats = model_features(fitted, data.features)
    imputed = impute(framed, fitted, data.features).cache()
    tr = accepted(imputed.where(F.col(FOLD) >= 0))
    te_all = imputed.where(F.col(FOLD) == -1)
    model = fit_best(best["algorithm"], params, tr, feats, cfg, n_classes)
    pred, features_col = apply_model(kind, model, accepted(te_all), feats, cfg.task, n_classes)
    pred = add_scores(pred, best["algorithm"], cfg.task, data.labels)
    cols = [data.key, data.group, "prediction", "score",
            *([LABEL] if data.label and cfg.task != "clustering" else [])]
    if cfg.task == "clustering":
        from pyspark.ml.functions import vector_to_array

        pred = pred.withColumn("_x", vector_to_array(features_col))
        cols.append("_x")
    test_pdf = pred.select(*dict.fromkeys(cols)).toPandas().sort_values(data.key, kind="stable")
    test_rejected = te_all.where(F.col(REJECT_STEP).isNotNull()).count()
    test_rows = te_all.count()
    x = np.vstack(test_pdf["_x"].to_numpy()) if cfg.task == "clustering" else None
    metrics = test_metrics(test_pdf, cfg.task, data.labels, data.group, cfg, x)
    # from the cached frame (the same rows: every group has a fold) instead of re-reading
    fingerprint = data_fingerprint(framed.select(*data.frame.columns))
    config_doc = cfg.model_dump(mode="json")
    hashed = cfg.model_dump(mode="json", exclude={"sklearn_max_rows"})  # no effect on results
    model_id = (f"{model_name(best['algorithm'])}-"
                f"{sha({'config': hashed, 'data': fingerprint, 'seed': cfg.seed})}")
    out = f"{lake.path('models')}/{model_id}"
    shutil.rmtree(local_path(out), ignore_errors=True)
    os.makedirs(local_path(out))
    saved = save_model(kind, model, out)
    fitted.save(local_path(f"{out}/imputer"))
    weights = model_weights(kind, model, feats)
    plot_files = write_plots(local_path(out), test_pdf, cfg.task, data.labels, weights, feats)
    imputed.unpersist()
    board.to_parquet(local_path(f"{out}/leaderboard.parquet"), index=False)
    counts = {**data.counts, "rows": int(len(keys)),
              "train_rows": int((keys[FOLD] >= 0).sum()),
              "train_rows_rejected": int(len(train_res.rejected.index.unique())),
              "test_rows": int(test_rows), "test_rows_rejected": int(test_rejected),
              "test_rows_scored": int(len(test_pdf))}
    balance = None
    if data.labels is not None:
        side = np.where(keys[FOLD] >= 0, "train", "test")
        balance = {s: {str(data.labels[int(k)]): int(v) for k, v in
                       keys.loc[side == s, LABEL].value_counts().sort_index().items()}
                   for s in ("train", "test")}
    metrics_doc = {
        "model_id": model_id, "task": cfg.task, "algorithm": best["algorithm"], "kind": kind,
        "params": params, "selection": {"metric": cfg.metric(), "folds": cfg.selection.folds,
                      "cv_mean": _num(best["mean"]), "cv_sd": _num(best["sd"])},
        "test": metrics, "counts": counts,
        "missing": {"train": train_res.report.model_dump(),
                    "test": test_report.model_dump(),
                    "imputer_steps": fitted.describe()},
    }
    with open(local_path(f"{out}/metrics.json"), "w") as fh:
        json.dump(metrics_doc, fh, indent=2, sort_keys=True, default=_json_default)
    metadata = {
        "model_id": model_id, "task": cfg.task, "algorithm": best["algorithm"], **saved,
        "params": params, "label_col": data.label, "labels": data.labels,
        "group_col": data.group, "key_col": data.key, "id_col": cfg.id_col,
        "aggregate": cfg.aggregate, "series_col": cfg.series_col,
        "input_features": data.features, "features": feats, "extra_columns": data.extra,
        "seed": cfg.seed, "config": config_doc, "config_hash": sha(config_doc),
        "data_fingerprint": fingerprint, "source": data.source,
        "snapshot": {"counts": counts, "label_balance": balance},
        "versions": versions(), "plots": plot_files,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "weights": None if weights is None else {"kind": weights[0],
                                                 "values": dict(zip(feats, weights[1],
                                                                    strict=True))},
    }
    best_doc = {"algorithm": best["algorithm"], "kind": kind, "params": params,
                "cv_mean": _num(best["mean"]), "cv_sd": _num(best["sd"])}
    return {"model_id": model_id, "out_dir": out, "metrics": metrics, "counts": counts,
            "best": best_doc, "metadata": metadata}


# ------------------------------------------------------------------- MLlib or scikit-learn
def model_name(algorithm: str) -> str:
    """The model id prefix: `randomforestclassifier`, `sklearn-histgradientboostingclassifier`."""
    if is_estimator_path(algorithm):
        return "sklearn-" + algorithm.rpartition(".")[2].lower()
    return algorithm.lower()


def fit_best(algorithm: str, params: dict[str, Any], train: DataFrame, feats: list[str],
             cfg: TrainSettings, n_classes: int) -> Any:
    """The winner refitted on the imputed training split: a `PipelineModel`, or a fitted
    scikit-learn `Pipeline` ([StandardScaler if standardize] + estimator)."""
    if is_estimator_path(algorithm):
        label = LABEL if cfg.task != "clustering" else None
        return sklearn_train.refit(train, feats, label, algorithm, params,
                                   standardize=cfg.standardize, seed=cfg.seed,
                                   max_rows=cfg.sklearn_max_rows)
    return build_pipeline(algorithm, params, feats, standardize=cfg.standardize,
                          n_classes=n_classes, seed=cfg.seed).fit(train)


def apply_model(kind: str, model: Any, df: DataFrame, feats: list[str], task: str,
                n_classes: int) -> tuple[DataFrame, str]:
    """(`df` with MLlib-shaped `prediction` / `probability` columns, the column holding the
    features the final estimator saw). scikit-learn: broadcast model in a pandas UDF."""
    if kind == "sklearn":
        return predict_with_broadcast(df, model, feats, task, n_classes,
                                      features_col=FEATURES), FEATURES
    return model.transform(df), model.stages[-1].getFeaturesCol()


def save_model(kind: str, model: Any, out: str) -> dict[str, Any]:
    """Write the fitted model into the model folder; its metadata entries."""
    if kind == "sklearn":
        return {"kind": kind, "model_file": sklearn_train.save(model, local_path(out))}
    model.write().overwrite().save(f"{out}/pipeline")
    return {"kind": kind, "model_file": "pipeline"}


def model_weights(kind: str, model: Any, feats: list[str]) -> tuple[str, list[float]] | None:
    from medspark.models.mllib import feature_weights

    if kind == "sklearn":
        return estimator_weights(model, feats)
    return feature_weights(model.stages[-1], feats)


def _num(v: Any) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return str(v)
