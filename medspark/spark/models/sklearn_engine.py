"""The scikit-learn engine: candidates fitted by scikit-learn inside Spark tasks.

A candidate is an estimator named by import path, or (with `engine: auto`) an MLlib candidate's
scikit-learn counterpart (`medspark.models.counterparts`). Selection runs every (grid point,
fold) pair as one Spark task: the task reads the staged training split (`StagedRows`,
pyarrow), fits its fold's imputer (or applies the one given), fits `[StandardScaler if
standardize] + estimator` with up to `CV_THREADS` threads, predicts the fold and returns only
its score statistics' result (`medspark.models.scores`). The winner's refit is one task too,
using the cores of an executor (`n_jobs`, BLAS threads), fitting the final imputer as well
when none is given and, when asked (`Rows.held_out`), scoring the held-out split it read with
the training rows; only the fitted pipeline, the imputer and those scored rows (pickled) come
back to the driver. Scoring elsewhere broadcasts the pipeline to a pandas UDF. The model file
is a joblib pickle of the fitted `Pipeline` (trusted: load only models you wrote, with the
scikit-learn version that saved them).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from medspark.models.missing import (
    REJECT_STEP,
    FittedImputer,
    MissingValuePlan,
    batch_counts,
    mark_rejected,
    model_features,
    sum_counts,
)
from medspark.models.scores import fold_stats, score_from_stats, score_values
from medspark.models.sklearn_candidates import estimator_weights, fit_pipeline, predict_outputs
from medspark.models.sklearn_estimators import feature_frame
from medspark.spark.models.base import (
    FOLD,
    GROUP,
    LABEL,
    MODEL_X,
    PREDICTION,
    PROBABILITY,
    FoldScore,
    HeldOutScores,
    Model,
    ModelContext,
    ModelSpec,
    Rows,
    Weights,
    scored_columns,
)
from medspark.spark.models.tasks import (
    Stopwatch,
    complete_rows,
    fold_rows,
    impute_accepted,
    read_rows,
    spark_tasks,
)

MODEL_FILE = "sklearn_pipeline.joblib"
# threads of one CV fit: two, so that the stage's last tasks use the cores the finished ones
# left idle (at most twice as many threads as cores while every task runs; 100k x 100
# forest selection on 2 cores: 21.6 -> 19.1 s). Fits do not depend on it.
CV_THREADS = 2
_SCORE_SCHEMA = T.StructType([
    T.StructField("task", T.LongType()), T.StructField("score", T.DoubleType()),
    T.StructField("seconds", T.DoubleType()), T.StructField("error", T.StringType())])
_FIT_SCHEMA = T.StructType([T.StructField("model", T.BinaryType()),
                            T.StructField("error", T.StringType())])
_OUT_TYPE = T.StructType([T.StructField(PREDICTION, T.DoubleType()),
                          T.StructField(PROBABILITY, T.ArrayType(T.DoubleType())),
                          T.StructField(MODEL_X, T.ArrayType(T.DoubleType()))])


def _xy(pdf: pd.DataFrame, features: list[str], supervised: bool
        ) -> tuple[pd.DataFrame, np.ndarray | None]:
    return (feature_frame(pdf, features),
            pdf[LABEL].to_numpy(dtype="float64") if supervised else None)


def _fit_task(spec: ModelSpec, ctx: ModelContext, train: pd.DataFrame, features: list[str],
              threads: int) -> Any:
    from threadpoolctl import threadpool_limits

    X, y = _xy(train, features, ctx.task != "clustering")
    if len(X) == 0:
        raise ValueError("no training rows left after imputation")
    with threadpool_limits(limits=threads):
        return fit_pipeline(spec.algorithm, spec.params, X, y, standardize=ctx.standardize,
                            seed=ctx.seed, n_jobs=threads if threads > 1 else None)


class SklearnModel(Model):
    """A fitted scikit-learn `Pipeline` ([StandardScaler] + estimator)."""

    engine = "sklearn"
    in_tasks = True

    # ------------------------------------------------------------------------------ fit
    def fit(self, rows: Rows) -> SklearnModel:
        """The refit: one Spark task on the staged rows with `ctx.threads` cores. Rows whose
        imputer is a plan: the task fits the imputer too (`self.imputer`)."""
        if rows.staged is None or rows.imputer is None:
            raise ValueError("the scikit-learn engine fits staged rows (Rows.staged) with an "
                             "imputer or a plan")
        payload = (self.spec, self.ctx, rows.staged, rows.imputer,
                   list(rows.features), rows.exclude_fold, rows.held_out)

        def one(payloads, task_id: int) -> pd.DataFrame:
            del task_id
            spec, ctx, staged, imputer, feats, exclude, held_out = payloads[0].value
            every = read_rows(staged, split="train" if held_out is None else "all")
            train, _ = fold_rows(every, exclude)
            try:
                imputer, feats, train = _impute_training(imputer, train, feats)
                fitted = _fit_task(spec, ctx, train, feats, ctx.threads)
                scored = None if held_out is None else _score_held_out(
                    fitted, ctx, imputer, held_out.features, feats, every, staged.key)
                blob, error = pickle.dumps((fitted, imputer, feats, scored),
                                           protocol=pickle.HIGHEST_PROTOCOL), None
            except Exception as e:  # noqa: BLE001 - reported on the driver
                blob, error = None, f"{type(e).__name__}: {e}"
            return pd.DataFrame({"model": [blob], "error": [error]})

        (row,) = spark_tasks(_spark(), [payload], 1, one, _FIT_SCHEMA,
                             f"medspark train: refit {self.spec.estimator}")
        if row["error"]:
            _raise_plan_error(row["error"])
            raise ValueError(f"refit of {self.spec.algorithm} {self.spec.params}: "
                             f"{row['error']}")
        self.fitted, imputer, self.features, self.held_out = pickle.loads(row["model"])
        self.imputer = imputer if isinstance(rows.imputer, MissingValuePlan) else None
        return self

    @classmethod
    def cross_validate(cls, models: list[Model], folds: Any) -> list[FoldScore]:
        """Every (model, fold) pair as one Spark task on the staged split (module doc)."""
        staged, k = folds.stage(), folds.k
        specs = [m.spec for m in models]
        ctx = models[0].ctx
        # a fold's fitted imputer, or the plan: the task fits the fold's imputer itself
        fold_inputs = {f: folds.imputers.get(f) or folds.plan for f in range(k)}

        def one(payloads, task_id: int) -> pd.DataFrame:
            from threadpoolctl import threadpool_limits

            the_specs, the_ctx, the_staged, inputs, raw_feats = (p.value for p in payloads)
            index, fold = divmod(task_id, k)
            timer = Stopwatch()
            try:
                train, valid = fold_rows(read_rows(the_staged), fold)
                imputer, feats, train = _impute_training(inputs[fold], train, raw_feats)
                valid = impute_accepted(valid, imputer, feats)
                model = _fit_task(the_specs[index], the_ctx, train, feats,
                                  min(the_ctx.threads, CV_THREADS))
                X, y = _xy(valid, feats, the_ctx.task != "clustering")
                with threadpool_limits(limits=1):
                    out = predict_outputs(model, X, the_ctx.task, the_ctx.n_classes)
                stats = fold_stats(the_ctx.metric, y, out["prediction"], out["probability"],
                                   out["features"], the_ctx.n_classes)
                score, error = score_from_stats(the_ctx.metric, stats), None
            except Exception as e:  # noqa: BLE001 - one failed candidate must not end the run
                score, error = float("nan"), f"{type(e).__name__}: {e}"
            return pd.DataFrame({"task": [task_id], "score": [score],
                                 "seconds": [timer.seconds()], "error": [error]})

        rows = spark_tasks(_spark(), [specs, ctx, staged, fold_inputs, list(folds.features)],
                           len(models) * k, one, _SCORE_SCHEMA,
                           f"medspark train: {len(models)} scikit-learn candidates x {k} folds")
        out = []
        for r in sorted(rows, key=lambda r: r["task"]):
            _raise_plan_error(r["error"])
            index, fold = divmod(int(r["task"]), k)
            out.append(FoldScore(index, fold, _float(r["score"]), _float(r["seconds"]),
                                 r["error"]))
        return out

    # ------------------------------------------------------------------------ transform
    def transform(self, frame: DataFrame) -> DataFrame:
        """`frame` plus the common prediction columns, from the pipeline broadcast once."""
        bc = frame.sparkSession.sparkContext.broadcast(self.fitted)
        cols, task, n_classes = list(self.features), self.ctx.task, self.ctx.n_classes

        @pandas_udf(_OUT_TYPE)  # type: ignore[call-overload]
        def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            from threadpoolctl import threadpool_limits

            model = bc.value
            for feats in batches:
                with threadpool_limits(limits=1):
                    out = predict_outputs(model, feature_frame(feats, cols), task, n_classes)
                frame_out = pd.DataFrame({PREDICTION: out["prediction"]})
                for name, key in ((PROBABILITY, "probability"), (MODEL_X, "features")):
                    values = out[key]
                    frame_out[name] = None if values is None else list(values)
                yield frame_out

        tmp = "_ms_sklearn_out"
        out = frame.withColumn(tmp, apply(F.struct(*cols)))
        return out.select(*frame.columns, F.col(f"{tmp}.{PREDICTION}").alias(PREDICTION),
                          F.col(f"{tmp}.{PROBABILITY}").alias(PROBABILITY),
                          F.col(f"{tmp}.{MODEL_X}").alias(MODEL_X))

    # --------------------------------------------------------------------------- files
    def save(self, folder) -> dict[str, Any]:
        return {"kind": self.engine, "model_file": folder.write_pickle(MODEL_FILE, self.fitted)}

    @classmethod
    def load(cls, folder, meta: dict[str, Any], ctx: ModelContext) -> SklearnModel:
        import sklearn

        from medspark.spark.models.mllib_engine import spec_of

        saved = (meta.get("versions") or {}).get("scikit-learn")
        if saved != sklearn.__version__:
            warnings.warn(f"model {meta.get('model_id')} saved with scikit-learn {saved}, "
                          f"loading with {sklearn.__version__}", stacklevel=2)
        model = cls(spec_of(meta, cls.engine), ctx)
        model.features = list(meta["features"])
        model.fitted = folder.read_pickle(meta.get("model_file") or MODEL_FILE)
        return model

    def feature_weights(self) -> Weights | None:
        found = estimator_weights(self.fitted, self.features)
        return None if found is None else Weights(*found)

    def describe(self) -> dict[str, Any]:
        est = self.fitted[-1] if self.fitted is not None else None
        fitted = {k: v for k, v in est.get_params(deep=False).items()
                  if isinstance(v, int | float | str | bool | type(None))} if est else {}
        return {**super().describe(), "estimator_class": type(est).__name__ if est else None,
                "fitted_params": fitted,
                "pipeline": [name for name, _ in self.fitted.steps] if est else []}


def _score_held_out(fitted: Any, ctx: ModelContext, imputer: FittedImputer,
                    raw_features: list[str], features: list[str], rows: pd.DataFrame,
                    key: str) -> HeldOutScores:
    """The held-out rows of `rows` (`FOLD == -1`, sorted by key) imputed, counted and scored
    as the Spark evaluation does (`medspark.spark.models.evaluation`), in the refit task."""
    from threadpoolctl import threadpool_limits

    test = rows[rows[FOLD].to_numpy() == -1].reset_index(drop=True)
    cols = [c for c in raw_features if c in test.columns]
    kept = [c for c in cols if c in set(model_features(imputer, cols))]
    marked = mark_rejected(test, imputer, raw_features)
    report = sum_counts([batch_counts(test, marked, cols, kept)], cols, kept)
    ok = marked[marked[REJECT_STEP].isna()]
    X, y = _xy(ok, features, ctx.task != "clustering")
    with threadpool_limits(limits=ctx.threads):
        out = predict_outputs(fitted, X, ctx.task, ctx.n_classes)
    scored = pd.DataFrame({key: ok[key].to_numpy(), GROUP: ok[GROUP].to_numpy(),
                           PREDICTION: out["prediction"],
                           "score": score_values(ctx.task, len(ctx.labels or []),
                                                 out["prediction"], out["probability"])})
    if y is not None:
        scored[LABEL] = y
    else:
        scored[MODEL_X] = list(out["features"])
    return HeldOutScores(scored[scored_columns(key, ctx.task)], report)


def _impute_training(given: FittedImputer | MissingValuePlan, train: pd.DataFrame,
                     features: list[str]) -> tuple[FittedImputer, list[str], pd.DataFrame]:
    """(the imputer, the model features it leaves, the training rows it accepts, imputed):
    `given` applied if fitted, else the plan fitted on `train` (raw training rows of a task),
    keeping the rows it filled while fitting (no second pass; a plan that cannot be fitted
    raises PlanError)."""
    if not isinstance(given, MissingValuePlan):
        return given, model_features(given, features), impute_accepted(train, given, features)
    try:
        imputer, result = given.fit_transform(train.drop(columns=FOLD).reset_index(drop=True))
    except (ValueError, KeyError) as e:
        raise PlanError(f"{type(e).__name__}: {e}") from None
    feats = model_features(imputer, features)
    return imputer, feats, complete_rows(result.frame, feats)


class PlanError(ValueError):
    """The missing-value plan could not be fitted on a task's rows (a configuration error)."""


def _raise_plan_error(error: str | None) -> None:
    if error and error.startswith(PlanError.__name__ + ":"):
        from medspark.config import ConfigError

        raise ConfigError(f"train.missing: {error.split(':', 1)[1].strip()}")


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)  # Arrow turns NaN into null


def _spark():
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("no active SparkSession")
    return spark
