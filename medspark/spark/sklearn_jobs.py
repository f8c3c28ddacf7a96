"""scikit-learn on Spark: driver fits, one model per group, parallel search, broadcast scoring.

- `fit_on_driver`: collect a small table (bounded by `max_rows`) and fit one pipeline.
- `fit_per_group` / `score_per_group`: one pipeline per group (`applyInPandas`; a group that
  cannot be fitted gives an error row, not a failed job), then each row scored by its group's
  model.
- `parallel_search` / `serial_search`: every (candidate, fold) pair of a grid evaluated on
  patient-grouped stratified folds, in Spark tasks or in a local loop; both give identical
  fold scores, the best candidate (ties -> lowest id) is refitted on all rows on the driver.
- `score_with_broadcast` / `predict_with_broadcast`: a fitted model broadcast once and applied
  by a pandas UDF (one score; or MLlib-shaped prediction, probability and features columns).
- `spark_tasks`: the task runner behind `parallel_search`, also used by `medspark train` for
  its scikit-learn candidates (`medspark.spark.sklearn_train`).

Pipelines are [SimpleImputer(median)] + [StandardScaler] + the estimator (see
`medspark.models.sklearn_estimators.make_pipeline`). Models are pickled: load only model
tables you wrote, with the same scikit-learn version.
"""

from __future__ import annotations

import math
import pickle
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DoubleType,
    LongType,
    NumericType,
    StringType,
    StructField,
    StructType,
)

from medspark.models.sklearn_estimators import (
    ParamGrid,
    ScoreMethod,
    SearchData,
    SearchSpec,
    best_candidate,
    check_labels,
    evaluate_fold,
    expand_grid,
    feature_frame,
    leaderboard,
    make_pipeline,
    predict_scores,
    resolve_estimator,
    score_method,
    scorer,
    stable_order,
)
from medspark.models.splits import Task, grouped_stratified_kfold

DEFAULT_MAX_ROWS = 200_000
SEARCH_JOB_GROUP = "medspark-sklearn-search"
_JOB_PROPS = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")


class SearchResult(NamedTuple):
    """Unpacks as `(best_params, leaderboard, model)`."""

    best_params: dict[str, Any]
    leaderboard: pd.DataFrame
    model: Any


# ---------------------------------------------------------------------------- helpers
def _check_columns(df: DataFrame, feature_cols: Sequence[str], *other: str | None) -> None:
    if not feature_cols:
        raise ValueError("no feature columns given")
    fields = {f.name: f.dataType for f in df.schema.fields}
    absent = [c for c in [*feature_cols, *other] if c is not None and c not in fields]
    if absent:
        raise KeyError(f"column(s) {absent} not in the DataFrame")
    bad = [c for c in feature_cols if not isinstance(fields[c], NumericType | BooleanType)]
    if bad:
        raise ValueError(f"feature column(s) {bad} are not numeric")


def collect_bounded(df: DataFrame, cols: Sequence[str], max_rows: int) -> pd.DataFrame:
    """`df[cols]` as pandas, refusing (without collecting it all) above `max_rows` rows."""
    pdf = df.select(*dict.fromkeys(cols)).limit(max_rows + 1).toPandas()
    if len(pdf) > max_rows:
        raise ValueError(
            f"the table has more than max_rows={max_rows} rows: too large to fit on the "
            "driver (raise max_rows, sample it, or use fit_per_group)"
        )
    return pdf


def _fit_pipeline(pdf: pd.DataFrame, feature_cols: Sequence[str], label_col: str | None,
                  estimator_path: str, params: Mapping[str, Any] | None, impute: bool,
                  scale: bool, seed: int | None) -> Any:
    model = make_pipeline(estimator_path, params, impute=impute, scale=scale, seed=seed)
    pdf = stable_order(pdf, [*feature_cols, *([label_col] if label_col else [])])
    y = check_labels(pdf, label_col).to_numpy() if label_col else None
    return model.fit(feature_frame(pdf, feature_cols), y)


@contextmanager
def _job_group(sc: Any, group_id: str, description: str) -> Iterator[None]:
    """Run the enclosed jobs under a Spark job group, restoring the caller's afterwards."""
    before = {k: sc.getLocalProperty(k) for k in _JOB_PROPS}
    sc.setJobGroup(group_id, description)
    try:
        yield
    finally:
        for key, value in before.items():
            sc.setLocalProperty(key, value)


# ---------------------------------------------------------------------------- (a) driver
def fit_on_driver(
    df: DataFrame,
    feature_cols: Sequence[str],
    label_col: str | None,
    estimator_path: str,
    params: Mapping[str, Any] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    impute: bool = True,
    scale: bool = True,
    seed: int | None = 0,
) -> Any:
    """Collect `df` (at most `max_rows` rows, else ValueError) and fit the pipeline on it
    (`label_col` None: an unsupervised estimator, e.g. a clusterer)."""
    resolve_estimator(estimator_path, params)  # fail before any Spark work
    _check_columns(df, feature_cols, label_col)
    pdf = collect_bounded(df, [*feature_cols, *([label_col] if label_col else [])], max_rows)
    if pdf.empty:
        raise ValueError("the table is empty")
    return _fit_pipeline(pdf, feature_cols, label_col, estimator_path, params, impute, scale,
                         seed)


# ---------------------------------------------------------------------------- (b) per group
def _models_schema(df: DataFrame, group_col: str) -> StructType:
    return StructType([
        StructField(group_col, df.schema[group_col].dataType),
        StructField("n_rows", LongType(), False),
        StructField("model", BinaryType()),
        StructField("train_score", DoubleType()),
        StructField("error", StringType()),
    ])


def fit_per_group(
    df: DataFrame,
    group_col: str,
    feature_cols: Sequence[str],
    label_col: str,
    estimator_path: str,
    params: Mapping[str, Any] | None = None,
    metric: str | None = None,
    min_rows: int = 2,
    impute: bool = True,
    scale: bool = True,
    seed: int | None = 0,
) -> DataFrame:
    """One fitted pipeline per value of `group_col`, via `groupBy(group_col).applyInPandas`.

    Rows: `group_col`, `n_rows`, `model` (pickled pipeline), `train_score` (`metric` on the
    training rows, default the estimator's `score`: accuracy or R²) and `error` (set, with
    `model` null, when the group cannot be fitted: fewer than `min_rows` rows, a single class
    for a classifier, missing labels, or any exception from `fit`). Lazy: nothing runs until
    the result is used; cache it if you use it more than once.
    """
    from sklearn.base import is_classifier

    classifier = is_classifier(resolve_estimator(estimator_path, params))
    if metric is not None:
        scorer(metric)
    _check_columns(df, feature_cols, group_col, label_col)
    cols = list(dict.fromkeys([group_col, *feature_cols, label_col]))

    def fit_group(pdf: pd.DataFrame) -> pd.DataFrame:
        from threadpoolctl import threadpool_limits

        row: dict[str, Any] = {group_col: pdf[group_col].iloc[0], "n_rows": len(pdf),
                               "model": None, "train_score": math.nan, "error": None}
        labels = pdf[label_col].dropna()
        if len(pdf) < min_rows:
            row["error"] = f"{len(pdf)} row(s), fewer than min_rows={min_rows}"
        elif classifier and labels.nunique() < 2:
            row["error"] = f"single class {labels.unique().tolist()}: cannot fit a classifier"
        else:
            try:
                with threadpool_limits(limits=1):
                    model = _fit_pipeline(pdf, feature_cols, label_col, estimator_path, params,
                                          impute, scale, seed)
                    X, y = feature_frame(pdf, feature_cols), pdf[label_col].to_numpy()
                    row["train_score"] = float(
                        scorer(metric)(model, X, y) if metric else model.score(X, y))
                row["model"] = pickle.dumps(model)
            except Exception as exc:  # recorded per group; the job goes on
                row["error"] = "".join(traceback.format_exception_only(exc)).strip()
        return pd.DataFrame([row])

    return df.select(*cols).groupBy(group_col).applyInPandas(
        fit_group, schema=_models_schema(df, group_col))


def load_group_models(models_df: DataFrame, group_col: str) -> dict[Any, Any]:
    """The fitted models of `fit_per_group` by group value (groups with an error left out)."""
    rows = models_df.where(F.col("model").isNotNull()).select(group_col, "model").collect()
    return {r[group_col]: pickle.loads(r["model"]) for r in rows}


def score_per_group(
    df: DataFrame,
    models_df: DataFrame,
    group_col: str,
    feature_cols: Sequence[str],
    output_col: str = "score",
    method: ScoreMethod = "auto",
) -> DataFrame:
    """`df` plus `output_col`: each row scored by the model of its group (null without one).

    The models table (one small row per group) is collected and broadcast, so the large `df`
    is never shuffled or joined; each Spark task unpickles only the models its rows need.
    Rows with a null group get a null score.
    """
    _check_columns(df, feature_cols, group_col)
    if output_col in df.columns:
        raise ValueError(f"column {output_col!r} already exists")
    rows = models_df.where(F.col("model").isNotNull()).select(group_col, "model").collect()
    methods = {r[group_col]: score_method(pickle.loads(r["model"]), method) for r in rows}
    blobs = {r[group_col]: bytes(r["model"]) for r in rows}
    bc = df.sparkSession.sparkContext.broadcast((blobs, methods))
    cols = list(feature_cols)

    @pandas_udf(DoubleType())  # type: ignore[call-overload]
    def score(batches: Iterator[tuple[pd.Series, pd.DataFrame]]) -> Iterator[pd.Series]:
        blobs, methods = bc.value
        cache: dict[Any, Any] = {}
        for groups, feats in batches:
            X = feature_frame(feats, cols)
            out = np.full(len(X), np.nan)
            for g in pd.unique(groups.dropna()):
                if g not in blobs:
                    continue
                if g not in cache:
                    cache[g] = pickle.loads(blobs[g])
                mask = (groups == g).to_numpy()
                out[mask] = predict_scores(cache[g], X[mask], methods[g])
            yield pd.Series(out)

    return df.withColumn(output_col, score(F.col(group_col), F.struct(*cols)))


# ---------------------------------------------------------------------------- (c) search
def _search_setup(
    df: DataFrame, feature_cols: Sequence[str], label_col: str, group_col: str,
    estimator_path: str, param_grid: ParamGrid, k: int, seed: int, metric: str, impute: bool,
    scale: bool, task: Task, max_rows: int,
) -> tuple[SearchData, SearchSpec]:
    spec = SearchSpec(estimator_path, expand_grid(estimator_path, param_grid), metric, impute,
                      scale, seed)
    scorer(metric)
    _check_columns(df, feature_cols, label_col, group_col)
    pdf = collect_bounded(df, [group_col, *feature_cols, label_col], max_rows)
    # a fixed row order, so the folds (and the fits) do not depend on Spark's partitioning
    pdf = stable_order(pdf, [group_col, *feature_cols, label_col])
    folds = grouped_stratified_kfold(pdf, group_col, label_col, k=k, seed=seed, task=task)
    data = SearchData(feature_frame(pdf, feature_cols), check_labels(pdf, label_col).to_numpy(),
                      [(f.train, f.test) for f in folds])
    return data, spec


def _finish(data: SearchData, spec: SearchSpec, results: list[dict[str, Any]],
            k: int) -> SearchResult:
    board = leaderboard(results, spec, k)
    best = best_candidate(board)
    params = spec.candidates[best]
    model = make_pipeline(spec.path, params, spec.impute, spec.scale, spec.seed)
    return SearchResult(dict(params), board, model.fit(data.X, data.y))


@contextmanager
def spark_tasks(
    spark: Any,
    payloads: Sequence[Any],
    n_tasks: int,
    run_one: Callable[[Sequence[Any], int], pd.DataFrame],
    schema: StructType,
    description: str,
) -> Iterator[DataFrame]:
    """A DataFrame of `run_one(broadcasts, task_id)` rows, one Spark task per id 0..n-1.

    Each payload is broadcast once; `run_one` reads `broadcasts[i].value` for the ones it
    needs (a task deserialises only those). Jobs run inside the block belong to job group
    `SEARCH_JOB_GROUP`; the broadcasts are released when it ends, so act on (or cache and
    materialise) the DataFrame inside it.
    """
    sc = spark.sparkContext
    broadcasts = [sc.broadcast(p) for p in payloads]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for task_id in batch["id"]:
                yield run_one(broadcasts, int(task_id))

    try:
        with _job_group(sc, SEARCH_JOB_GROUP, description):
            tasks = spark.range(0, n_tasks, 1, numPartitions=max(n_tasks, 1))
            yield tasks.mapInPandas(run, schema=schema)
    finally:
        for bc in broadcasts:
            bc.unpersist()


_TASK_SCHEMA = StructType([
    StructField("candidate_id", LongType(), False),
    StructField("fold_id", LongType(), False),
    StructField("score", DoubleType()),
    StructField("fit_seconds", DoubleType()),
    StructField("error", StringType()),
])


def parallel_search(
    df: DataFrame,
    feature_cols: Sequence[str],
    label_col: str,
    group_col: str,
    estimator_path: str,
    param_grid: ParamGrid,
    k: int = 5,
    seed: int = 0,
    metric: str = "roc_auc",
    impute: bool = True,
    scale: bool = True,
    task: Task = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> SearchResult:
    """Grid search with every (candidate, fold) fit in its own Spark task.

    The (small) training table is collected once and broadcast with the folds
    (`grouped_stratified_kfold` on `group_col`, stratified by label); a DataFrame of
    `n_candidates * k` rows, one per partition, runs `evaluate_fold` in `mapInPandas`. The
    leaderboard has mean ± sd of `metric` (greater is better) per candidate; the best (ties ->
    lowest candidate id) is refitted on all rows on the driver. The Spark job runs in job group
    `SEARCH_JOB_GROUP`.
    """
    data, spec = _search_setup(df, feature_cols, label_col, group_col, estimator_path,
                                  param_grid, k, seed, metric, impute, scale, task, max_rows)

    def one(payloads: Sequence[Any], task_id: int) -> pd.DataFrame:
        data, spec = payloads[0].value
        row = evaluate_fold(data, spec, task_id // k, task_id % k)
        return pd.DataFrame([row], columns=_TASK_SCHEMA.fieldNames())

    desc = f"{estimator_path}: {len(spec.candidates)} candidates x {k} folds"
    with spark_tasks(df.sparkSession, [(data, spec)], len(spec.candidates) * k, one,
                     _TASK_SCHEMA, desc) as tasks:
        results = [r.asDict() for r in tasks.collect()]
    return _finish(data, spec, results, k)


def serial_search(
    df: DataFrame,
    feature_cols: Sequence[str],
    label_col: str,
    group_col: str,
    estimator_path: str,
    param_grid: ParamGrid,
    k: int = 5,
    seed: int = 0,
    metric: str = "roc_auc",
    impute: bool = True,
    scale: bool = True,
    task: Task = "auto",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> SearchResult:
    """`parallel_search` as a local loop on the driver: same folds, same fold scores."""
    data, spec = _search_setup(df, feature_cols, label_col, group_col, estimator_path,
                                  param_grid, k, seed, metric, impute, scale, task, max_rows)
    results = [evaluate_fold(data, spec, c, f)
               for c in range(len(spec.candidates)) for f in range(k)]
    return _finish(data, spec, results, k)


# ---------------------------------------------------------------------------- scoring
def array_vector(name: str) -> Any:
    """An array<double> column as an ML vector (null stays null; `array_to_vector` fails)."""
    from pyspark.ml.functions import array_to_vector

    return F.when(F.col(name).isNotNull(), array_to_vector(F.col(name)))


def _apply_broadcast(df: DataFrame, model: Any, feature_cols: Sequence[str],
                     fn: Callable[[Any, pd.DataFrame], Any], return_type: DataType) -> Any:
    """A pandas UDF column: `fn(model, features)` per Arrow batch, the model broadcast once
    (`fn` returns a Series, or a DataFrame for a struct `return_type`)."""
    _check_columns(df, feature_cols)
    bc = df.sparkSession.sparkContext.broadcast(model)
    cols = list(feature_cols)

    @pandas_udf(return_type)  # type: ignore[call-overload]
    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.Series]:
        fitted = bc.value
        for feats in batches:
            yield fn(fitted, feature_frame(feats, cols))

    return apply(F.struct(*cols))


def score_with_broadcast(
    df: DataFrame,
    model: Any,
    feature_cols: Sequence[str],
    output_col: str = "score",
    method: ScoreMethod = "auto",
) -> DataFrame:
    """`df` plus `output_col` (double) from a fitted model broadcast once to the executors.

    `auto`: positive-class probability for binary classifiers with `predict_proba`,
    `decision_function` for those without, `predict` for regressors. The broadcast stays alive
    as long as the returned DataFrame may be evaluated.
    """
    if output_col in df.columns:
        raise ValueError(f"column {output_col!r} already exists")
    chosen = score_method(model, method)
    return df.withColumn(output_col, _apply_broadcast(
        df, model, feature_cols, lambda m, X: pd.Series(predict_scores(m, X, chosen)),
        DoubleType()))


def predict_with_broadcast(
    df: DataFrame,
    model: Any,
    feature_cols: Sequence[str],
    task: str,
    n_classes: int = 0,
    features_col: str = "features",
) -> DataFrame:
    """`df` plus MLlib-shaped columns from a broadcast model (`predict_outputs`): `prediction`
    (double), `probability` (vector; classification, clusterers with `predict_proba`) and, for
    clustering, `features_col` (vector of the rows as the final estimator sees them)."""
    from medspark.models.sklearn_candidates import output_frame, predict_outputs

    taken = [c for c in ("prediction", "probability", features_col) if c in df.columns]
    if taken:
        raise ValueError(f"column(s) {taken} already exist")
    keep_prob = task == "classification" or (task == "clustering"
                                             and hasattr(model, "predict_proba"))
    out_type = StructType([StructField("prediction", DoubleType()),
                           StructField("probability", ArrayType(DoubleType())),
                           StructField("features", ArrayType(DoubleType()))])
    tmp = "_ms_sklearn_out"
    out = df.withColumn(tmp, _apply_broadcast(
        df, model, feature_cols,
        lambda m, X: output_frame(predict_outputs(m, X, task, n_classes)), out_type))
    out = out.withColumn("prediction", F.col(f"{tmp}.prediction"))
    if keep_prob:
        out = out.withColumn("probability", array_vector(f"{tmp}.probability"))
    if task == "clustering":
        out = out.withColumn(features_col, array_vector(f"{tmp}.features"))
    return out.drop(tmp)
