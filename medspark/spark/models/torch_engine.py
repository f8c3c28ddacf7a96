"""The PyTorch engine's place in the model interface: `medspark deep` models as `Model`s.

A torch model reads plane rows (`inputs = "planes"`: pixels and their shape), not feature
columns. `medspark deep train` fits and saves it (TorchDistributor; `kind: torch` in
metadata.json, `model_config.json`), so `fit` and `save` are that job's; `load` and `transform`
make a saved one usable wherever the interface is (scoring goes through
`medspark.spark.deep_predict`, imported only when a torch model is used). To select torch
candidates in `medspark train`, implement `fit` (and `cross_validate` if the folds should run
as one distributed job) here: selection, evaluation and the model folder need nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medspark.spark.models.base import MODEL_X, PREDICTION, PROBABILITY, Model, Rows, Weights

DEEP_PREDICT = "medspark.spark.deep_predict"


class TorchModel(Model):
    """A saved `medspark deep` model."""

    engine = "torch"
    inputs = "planes"

    def fit(self, rows: Rows) -> TorchModel:
        raise NotImplementedError("torch models are trained by `medspark deep train`")

    def transform(self, frame: DataFrame) -> DataFrame:
        deep = importlib.import_module(DEEP_PREDICT)
        doc = deep.model_config(self.fitted)
        out = deep.score(deep.model_rows(frame, doc), self.fitted, doc)
        return out.withColumn(PREDICTION, F.col(PREDICTION).cast("double")).withColumn(
            PROBABILITY, F.col(PROBABILITY)).withColumn(MODEL_X, F.lit(None)
                                                        .cast("array<double>"))

    def save(self, folder) -> dict[str, Any]:
        raise NotImplementedError("torch models are saved by `medspark deep train`")

    @classmethod
    def load(cls, folder, meta: dict[str, Any], ctx) -> TorchModel:
        from medspark.spark.models.mllib_engine import spec_of

        model = cls(spec_of(meta, cls.engine), ctx)
        model.fitted = folder.local() or str(folder)  # the model folder deep_predict reads
        model.features = list(meta.get("input_columns") or [])
        return model

    def feature_weights(self) -> Weights | None:
        return None
