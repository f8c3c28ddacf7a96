"""scikit-learn candidates in `medspark train`: CV on the job's folds, refit, save and load.

The train job hands over, per CV fold, the training split as its fold imputer made it (the
same accepted rows and imputed values the MLlib candidates are fitted on), collected with
`collect_bounded` (at most `train.sklearn_max_rows` rows). Every (grid point, fold) pair is
then one Spark task (`spark_tasks`, the runner behind `parallel_search`) that fits the pipeline
on the fold's other folds (`evaluate_fold`) and returns its predictions on the fold; those
predictions are scored by the same MLlib evaluator as the MLlib candidates
(`medspark.models.mllib.evaluate`), so a mixed leaderboard ranks like with like.

A winner is refitted on the driver (`fit_on_driver`), applied with `predict_with_broadcast`
(train's held-out split and `medspark predict`) and saved as a joblib pickle of the
scikit-learn `Pipeline` ([StandardScaler] + estimator; imputation is the saved `imputer/`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

from medspark.models.mllib import FEATURES, LABEL, evaluate
from medspark.models.sklearn_candidates import output_frame, predict_outputs
from medspark.models.sklearn_estimators import SearchData, SearchSpec, evaluate_fold
from medspark.spark.sklearn_jobs import (
    array_vector,
    collect_bounded,
    fit_on_driver,
    spark_tasks,
)

log = logging.getLogger(__name__)
MODEL_FILE = "sklearn_pipeline.joblib"
EVAL_THREADS = 4  # concurrent evaluator jobs on the cached fold predictions
CAND, FOLD_ID, ERROR, SECONDS = "_ms_candidate", "_ms_fold_id", "_ms_error", "_ms_fit_seconds"
_TASK_SCHEMA = StructType([
    StructField(CAND, LongType(), False), StructField(FOLD_ID, LongType(), False),
    StructField(LABEL, DoubleType()), StructField("prediction", DoubleType()),
    StructField("probability", ArrayType(DoubleType())),
    StructField(FEATURES, ArrayType(DoubleType())),
    StructField(ERROR, StringType()), StructField(SECONDS, DoubleType())])


def too_many_rows(n_rows: int, max_rows: int, names: Sequence[str]) -> str | None:
    """The error text when `n_rows` training rows exceed `train.sklearn_max_rows`."""
    if n_rows <= max_rows:
        return None
    return (f"train.sklearn_max_rows={max_rows}: the training split has {n_rows} rows and the "
            f"scikit-learn candidate(s) {', '.join(names)} are fitted on rows collected to the "
            "driver; raise train.sklearn_max_rows, sample the table, or use MLlib algorithms")


def fold_data(part: DataFrame, key: str, label: str | None, fold_col: str, fold: int,
              features: list[str], max_rows: int) -> SearchData:
    """One CV fold's imputed training split on the driver (sorted by `key`): the rows of the
    other folds to fit on, the rows of `fold` to predict."""
    from medspark.models.sklearn_estimators import feature_frame

    cols = [key, *([label] if label else []), fold_col, *features]
    pdf = collect_bounded(part, cols, max_rows).sort_values(key, kind="stable",
                                                            ignore_index=True)
    held = (pdf[fold_col] == fold).to_numpy()
    y = pdf[label].to_numpy(dtype="float64") if label else None
    return SearchData(feature_frame(pdf, features), y,
                      [(np.flatnonzero(~held), np.flatnonzero(held))])


def _task_rows(combo: int, fold: int, data: SearchData, row: dict[str, Any]) -> pd.DataFrame:
    """A task's result: one row per predicted row, or one row carrying the error."""
    names = _TASK_SCHEMA.fieldNames()
    if row["error"] is not None:
        frame = pd.DataFrame({name: pd.Series([None], dtype=object) for name in names})
        frame[CAND], frame[FOLD_ID] = combo, fold
        frame[ERROR], frame[SECONDS] = row["error"], row["fit_seconds"]
        return frame
    frame = output_frame(row["output"]).rename(columns={"features": FEATURES})
    held = data.folds[0][1]
    frame[LABEL] = data.y[held] if data.y is not None else None
    frame[CAND], frame[FOLD_ID] = combo, fold
    frame[ERROR], frame[SECONDS] = None, row["fit_seconds"]
    return frame[names]


def cv_scores(spark: SparkSession, folds: list[SearchData], combos: list[tuple[str, dict]],
              *, metric: str, task: str, n_classes: int, standardize: bool, seed: int
              ) -> tuple[list[list[float]], list[str | None]]:
    """Fold scores (`metric`, MLlib evaluator) and first error of each (path, params) combo.

    One Spark task per (combo, fold); each fold's data is its own broadcast, so a task reads
    only the fold it fits.
    """
    k = len(folds)
    specs = [SearchSpec(path, [dict(params)], metric, impute=False, scale=standardize,
                        seed=seed) for path, params in combos]

    def one(payloads: Sequence[Any], task_id: int) -> pd.DataFrame:
        combo, fold = divmod(task_id, k)
        data = payloads[1 + fold].value
        row = evaluate_fold(data, payloads[0].value[combo], 0, 0,
                            apply=lambda m, X, _y: predict_outputs(m, X, task, n_classes))
        return _task_rows(combo, fold, data, row)

    scores = [[float("nan")] * k for _ in combos]
    errors: list[str | None] = [None] * len(combos)
    desc = f"medspark train: {len(combos)} scikit-learn candidates x {k} folds"
    with spark_tasks(spark, [specs, *folds], len(combos) * k, one, _TASK_SCHEMA,
                     desc) as tasks:
        preds = (tasks.withColumn("probability", array_vector("probability"))
                 .withColumn(FEATURES, array_vector(FEATURES)).cache())
        try:
            summary = preds.groupBy(CAND, FOLD_ID).agg(
                F.first(ERROR, ignorenulls=True).alias(ERROR),
                F.first(SECONDS).alias(SECONDS)).collect()
            done = {(int(r[CAND]), int(r[FOLD_ID])): r for r in summary}
            for (combo, fold), r in sorted(done.items()):
                if r[ERROR] is not None:
                    errors[combo] = errors[combo] or r[ERROR]
                    log.warning("fold %d %s %s failed: %s", fold, *combos[combo], r[ERROR])
            todo = [key for key, r in sorted(done.items()) if r[ERROR] is None]

            def score(key: tuple[int, int]) -> float:
                part = preds.where((F.col(CAND) == key[0]) & (F.col(FOLD_ID) == key[1]))
                return evaluate(part, metric, FEATURES)

            with ThreadPoolExecutor(EVAL_THREADS) as pool:  # small jobs: latency-bound
                for (combo, fold), value in zip(todo, pool.map(score, todo), strict=True):
                    scores[combo][fold] = value
                    log.info("fold %d %s %s: %s=%.4f (fit %.2fs)", fold, *combos[combo],
                             metric, value, done[combo, fold][SECONDS])
        finally:
            preds.unpersist()
    return scores, errors


def refit(train: DataFrame, features: list[str], label: str | None, path: str,
          params: dict[str, Any], *, standardize: bool, seed: int, max_rows: int) -> Any:
    """The winner's pipeline fitted on the whole (imputed, accepted) training split."""
    return fit_on_driver(train, features, label, path, params, max_rows=max_rows,
                         impute=False, scale=standardize, seed=seed)


def save(model: Any, directory: str) -> str:
    """Write the fitted pipeline into `directory`; returns the file name (for metadata)."""
    import joblib

    joblib.dump(model, os.path.join(directory, MODEL_FILE))
    return MODEL_FILE


def load(directory: str, meta: dict[str, Any]) -> Any:
    """The pipeline `save` wrote (a pickle: load only models you wrote). Warns when the
    installed scikit-learn differs from the one that saved it."""
    import joblib
    import sklearn

    saved = (meta.get("versions") or {}).get("scikit-learn")
    if saved != sklearn.__version__:
        warnings.warn(f"model {meta.get('model_id')} saved with scikit-learn {saved}, loading "
                      f"with {sklearn.__version__}", stacklevel=2)
    return joblib.load(os.path.join(directory, meta.get("model_file") or MODEL_FILE))
