"""The MLlib engine: a candidate is a `pyspark.ml` Pipeline fitted on Spark DataFrames.

`build_pipeline`: VectorAssembler -> StandardScaler (optional; not centred for BisectingKMeans)
-> MinMaxScaler + clip at 0 (NaiveBayes) -> the estimator (`medspark.models.algorithms` names
it). A `MultilayerPerceptronClassifier` takes `hidden_layers: [16]` (input and output sizes are
filled in from the data) instead of `layers`. The fitted `PipelineModel` is written by Spark
(any Hadoop URI); its output is brought to the engines' common shape (`prediction`,
`probability` array, `_ms_x`); LinearSVC's probability is the sigmoid of its margin.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medspark.models.algorithms import get_algorithm
from medspark.spark.models.base import (
    LABEL,
    MODEL_X,
    PREDICTION,
    PROBABILITY,
    Model,
    ModelContext,
    ModelSpec,
    Rows,
    Weights,
)

FEATURES_RAW, FEATURES, FEATURES_NB = "_ms_assembled", "_ms_features", "_ms_features_nn"
PIPELINE = "pipeline"


def make_estimator(name: str, params: dict[str, Any], *, n_features: int, n_classes: int,
                   seed: int, features_col: str = FEATURES):
    """The configured estimator reading `features_col` (and the `_ms_label` column)."""
    import importlib

    algo = get_algorithm(name)
    params = dict(params)
    hidden = params.pop("hidden_layers", None)
    if algo.name == "MultilayerPerceptronClassifier" and "layers" not in params:
        params["layers"] = [n_features, *(hidden or [max(2, n_features // 2)]), n_classes]
    est = getattr(importlib.import_module(algo.module), algo.name)(featuresCol=features_col,
                                                                     **params)
    if algo.task != "clustering":
        est.setLabelCol(LABEL)
    if est.hasParam("seed") and "seed" not in params:
        est.set(est.getParam("seed"), seed)
    return est


class ClipNonNegative(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable,
                      DefaultParamsWritable):
    """max(x, 0) per vector element: MinMaxScaler maps unseen rows outside [0, 1], and the
    multinomial NaiveBayes refuses negative values at prediction time too."""

    def __init__(self, inputCol: str | None = None, outputCol: str | None = None):
        super().__init__()
        self._set(**{k: v for k, v in {"inputCol": inputCol, "outputCol": outputCol}.items()
                     if v is not None})

    def _transform(self, dataset):
        from pyspark.ml.functions import array_to_vector, vector_to_array

        values = vector_to_array(self.getInputCol())
        clipped = F.transform(values, lambda x: F.greatest(x, F.lit(0.0)))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(clipped))


def build_pipeline(name: str, params: dict[str, Any], feature_cols: list[str], *,
                   standardize: bool, n_classes: int, seed: int):
    """VectorAssembler -> [StandardScaler] -> [MinMaxScaler + clip] -> estimator."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import MinMaxScaler, StandardScaler, VectorAssembler

    algo = get_algorithm(name)
    stages: list[Any] = [VectorAssembler(inputCols=list(feature_cols), outputCol=FEATURES_RAW)]
    col = FEATURES_RAW
    if standardize:
        stages.append(StandardScaler(inputCol=col, outputCol=FEATURES, withMean=algo.center,
                                     withStd=True))
        col = FEATURES
    if algo.non_negative:
        stages += [MinMaxScaler(inputCol=col, outputCol=FEATURES_NB + "_mm"),
                   ClipNonNegative(inputCol=FEATURES_NB + "_mm", outputCol=FEATURES_NB)]
        col = FEATURES_NB
    stages.append(make_estimator(name, params, n_features=len(feature_cols),
                                 n_classes=n_classes, seed=seed, features_col=col))
    return Pipeline(stages=stages)


class MLlibModel(Model):
    """A `PipelineModel`, fitted on the imputed training rows in Spark."""

    engine = "mllib"

    def fit(self, rows: Rows) -> MLlibModel:
        self.features = list(rows.features)
        pipe = build_pipeline(self.spec.algorithm, self.spec.params, self.features,
                              standardize=self.ctx.standardize, n_classes=self.ctx.n_classes,
                              seed=self.ctx.seed)
        self.fitted = pipe.fit(rows.frame)
        return self

    def transform(self, frame: DataFrame) -> DataFrame:
        from pyspark.ml.functions import vector_to_array

        out = self.fitted.transform(frame)
        last = self.fitted.stages[-1]
        if self.ctx.task == "classification" and PROBABILITY not in out.columns:
            margin = vector_to_array("rawPrediction")[1]  # LinearSVC: margins only
            p1 = 1 / (1 + F.exp(-margin))
            prob = F.array(1 - p1, p1)
        elif PROBABILITY in out.columns:
            prob = vector_to_array(PROBABILITY)
        else:
            prob = F.lit(None).cast("array<double>")
        x = (vector_to_array(last.getFeaturesCol()) if self.ctx.task == "clustering"
             else F.lit(None).cast("array<double>"))
        return out.select(*frame.columns, F.col(PREDICTION).cast("double").alias(PREDICTION),
                          prob.alias(PROBABILITY), x.alias(MODEL_X))

    def save(self, folder) -> dict[str, Any]:
        target = folder.child(PIPELINE)
        uri = target.spark_uri()
        if uri is not None:
            self.fitted.write().overwrite().save(uri)
        else:  # a filesystem object Spark cannot name: write locally, copy (local mode)
            _require_local_master(self.fitted)
            with tempfile.TemporaryDirectory() as tmp:
                self.fitted.write().save(os.path.join(tmp, PIPELINE))
                target.copy_from_local(os.path.join(tmp, PIPELINE))
        return {"kind": self.engine, "model_file": PIPELINE}

    @classmethod
    def load(cls, folder, meta: dict[str, Any], ctx: ModelContext) -> MLlibModel:
        from pyspark.ml import PipelineModel

        model = cls(spec_of(meta, cls.engine), ctx)
        model.features = list(meta["features"])
        source = folder.child(meta.get("model_file") or PIPELINE)
        uri = source.spark_uri()
        if uri is not None:
            model.fitted = PipelineModel.load(uri)
            return model
        tmp = tempfile.mkdtemp(prefix="medspark-model-")
        try:
            source.copy_to_local(tmp)
            model.fitted = PipelineModel.load(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return model

    def feature_weights(self) -> Weights | None:
        last = self.fitted.stages[-1]
        if hasattr(last, "featureImportances"):
            return Weights("importance", last.featureImportances.toArray().tolist())
        try:
            coef = last.coefficients.toArray().tolist()
        except Exception:  # noqa: BLE001 - multinomial LogisticRegression has a matrix instead
            return None
        return Weights("coefficient", coef) if len(coef) == len(self.features) else None

    def describe(self) -> dict[str, Any]:
        stages = [type(s).__name__ for s in self.fitted.stages] if self.fitted else []
        return {**super().describe(), "stages": stages}


def spec_of(meta: dict[str, Any], engine: str) -> ModelSpec:
    """The spec a saved model was fitted from (its metadata)."""
    return ModelSpec(meta["algorithm"], dict(meta.get("params") or {}), engine,
                     meta.get("estimator") or meta["algorithm"])


def _require_local_master(model: Any) -> None:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is not None and not spark.sparkContext.master.startswith("local"):
        from medspark.config import ConfigError

        raise ConfigError("an MLlib pipeline is written by Spark's executors: on a cluster the "
                          "model folder must be a URI Spark can write (hdfs://, s3a://, ...)")
    del model
