"""The one model interface: what selection, evaluation and artefact writing may ask of a model.

Every engine (MLlib pipelines, scikit-learn estimators in Spark tasks, and the PyTorch models of
`medspark deep`) is a `Model`: built from a `ModelSpec` (one grid point of a configured
candidate) and a `ModelContext` (task, classes, seed), it is fitted on `Rows`, transforms a
DataFrame into prediction columns, saves itself into a model `Folder` and loads back, and
reports feature weights and a description. Selection (`selection.py`), evaluation
(`evaluation.py`) and the model folder (`artifacts.py`) only use these methods, so an engine is
added by writing one subclass and registering it in `ENGINES`.

The output of `transform` is the same for every engine, so scoring never branches on it:

    prediction   double            class index (labels sorted, positive last), value or cluster
    probability  array<double>     per-class probabilities (classification; null otherwise)
    _ms_x        array<double>     clustering: the rows as the final estimator saw them

`inputs` says what a model reads: `features` (numeric columns, the train job's rows) or
`planes` (image rows: pixels and their shape, as `medspark deep` trains on). A planes model
gets `Rows` whose frame holds plane rows; nothing else changes.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

# the run's column names, defined with the split that the task path computes
from medspark.models.hash_split import FOLD, GROUP, LABEL, OWN_GROUP  # noqa: F401
from medspark.models.missing import REJECT_REASON, REJECT_STEP  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from medspark.models.folder import Folder
    from medspark.models.missing import FittedImputer, ImputeReport, MissingValuePlan

PREDICTION, PROBABILITY, MODEL_X = "prediction", "probability", "_ms_x"


@dataclass(frozen=True)
class ModelSpec:
    """One grid point of a configured candidate, and the engine that fits it."""

    algorithm: str               # as configured: an MLlib name or an import path
    params: dict[str, Any]       # as configured (MLlib names for MLlib candidates)
    engine: str                  # mllib | sklearn | torch
    estimator: str               # what is fitted: the MLlib class path or the sklearn path
    order: int = 0               # position in the configuration (leaderboard ties)
    note: str | None = None      # why this engine (engine: auto)

    def describe(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "params": self.params, "engine": self.engine,
                "estimator": self.estimator, "note": self.note}


@dataclass(frozen=True)
class ModelContext:
    """What every model of one run needs to know besides its spec."""

    task: str                    # classification | regression | clustering
    n_classes: int               # 0 unless classification
    labels: list[Any] | None     # class values by index
    standardize: bool
    seed: int
    metric: str                  # the selection metric
    threads: int = 1             # cores a single fit may use (the refit of the winner)


@dataclass(frozen=True)
class Weights:
    """One value per model feature: `importance` or `coefficient`."""

    kind: str
    values: list[float]


@dataclass
class StagedRows:
    """Raw (not imputed) rows written once as Parquet, for engines that fit in Spark tasks:
    a task reads them with pyarrow, keeps its rows (`FOLD != exclude`, or `FOLD >= 0` for
    all training rows), applies `imputer` and fits. Sorted by `key` in the task, so a fit
    does not depend on how Spark partitioned the rows."""

    folder: Folder
    files: list[str]
    key: str
    columns: list[str]

    @classmethod
    def of(cls, folder: Folder, files: list[str], key: str, columns: list[str]) -> StagedRows:
        """Staged rows whose tasks read `key`, `_ms_fold` and `columns`."""
        return cls(folder, files, key, list(dict.fromkeys([key, FOLD, *columns])))


@dataclass(frozen=True)
class HeldOut:
    """Asks a task engine to score the held-out split (`FOLD == -1` of the staged rows) in the
    refit task, after fitting: the split is small enough to come back whole (at most
    `train.eval_max_rows` rows). `features` are its raw feature columns."""

    features: list[str]


def scored_columns(key: str, task: str) -> list[str]:
    """The columns of scored held-out rows, wherever they were scored (Spark or a task)."""
    return list(dict.fromkeys(
        [key, GROUP, PREDICTION, "score", LABEL if task != "clustering" else MODEL_X]))


@dataclass
class HeldOutScores:
    """The held-out split scored where the model was fitted: the accepted rows sorted by key
    (`scored_columns`), as Spark's evaluation would have collected them, and the imputer's
    report on the split."""

    rows: pd.DataFrame
    report: ImputeReport


@dataclass
class Rows:
    """Rows to fit on: an imputed, accepted DataFrame (Spark engines, built on first use) and,
    when the run staged them, the same rows as files with the imputer to apply (task
    engines). `imputer` is fitted, or a plan the task engine fits on the rows it reads.
    `features` are the model inputs left after a fitted imputer dropped columns (with a
    plan: the raw features; the task fits the imputer and drops)."""

    features: list[str]
    build_frame: Callable[[], DataFrame]
    imputer: FittedImputer | MissingValuePlan | None = None
    staged: StagedRows | None = None
    exclude_fold: int | None = None  # None: every training fold
    held_out: HeldOut | None = None  # task engines: also score the held-out split
    _frame: DataFrame | None = field(default=None, repr=False)

    @property
    def frame(self) -> DataFrame:
        if self._frame is None:
            self._frame = self.build_frame()
        return self._frame


@dataclass
class FoldScore:
    """One (candidate, fold) evaluation."""

    candidate: int
    fold: int
    score: float
    fit_seconds: float = float("nan")
    error: str | None = None


class Model(ABC):
    """One candidate of one engine, before and after fitting (see the module docstring)."""

    engine: ClassVar[str]
    inputs: ClassVar[str] = "features"
    # fits in Spark tasks on staged rows, and fits its imputer there when `Rows.imputer` is a plan
    in_tasks: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec, ctx: ModelContext) -> None:
        self.spec, self.ctx = spec, ctx
        self.features: list[str] = []
        self.fitted: Any = None
        # the imputer a task engine fitted with the model (from a plan in Rows.imputer), else None
        self.imputer: FittedImputer | None = None
        # the held-out split scored by a task engine's refit (Rows.held_out), else None
        self.held_out: HeldOutScores | None = None

    @abstractmethod
    def fit(self, rows: Rows) -> Model:
        """Fit on `rows` (returns self, fitted)."""

    @abstractmethod
    def transform(self, frame: DataFrame) -> DataFrame:
        """`frame` (imputed, accepted rows) plus `prediction`, `probability`, `_ms_x`."""

    @abstractmethod
    def save(self, folder: Folder) -> dict[str, Any]:
        """Write the fitted model into the model folder; returns its metadata entries."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Folder, meta: dict[str, Any], ctx: ModelContext) -> Model:
        """The model `save` wrote (pickles are trusted: load only folders you wrote)."""

    @abstractmethod
    def feature_weights(self) -> Weights | None:
        """Importances or coefficients, one per feature, when the model has them."""

    def describe(self) -> dict[str, Any]:
        """JSON-able: the spec and the features (subclasses add what they fitted)."""
        return {**self.spec.describe(), "features": list(self.features)}

    @classmethod
    def cross_validate(cls, models: list[Model], folds: Any) -> list[FoldScore]:
        """Every (model, fold) score. The default fits fold by fold on Spark DataFrames (the
        fold's imputed rows, cached while its models fit); task engines override it."""
        from medspark.spark.models.scoring import fold_score

        out = []
        for fold in range(folds.k):
            train, valid = folds.spark_rows(fold)
            try:
                for i, model in enumerate(models):
                    out.append(_score_one(model, i, fold, train, valid, fold_score))
            finally:
                folds.release(fold)
        return out


def _score_one(model: Model, index: int, fold: int, train: Rows, valid: DataFrame,
               score: Callable[..., float]) -> FoldScore:
    import time

    start = time.perf_counter()
    try:
        fitted = type(model)(model.spec, model.ctx).fit(train)
        value = score(fitted.transform(valid), model.ctx)
    except Exception as e:  # noqa: BLE001 - one failed candidate must not end the selection
        return FoldScore(index, fold, float("nan"), time.perf_counter() - start,
                         f"{type(e).__name__}: {e}")
    return FoldScore(index, fold, value, time.perf_counter() - start)


# engine name -> "module:Class"; `torch` models are trained by `medspark deep train` and scored
# through `medspark.spark.deep_predict` (see `TorchModel` in predict routing).
ENGINES: dict[str, str] = {
    "mllib": "medspark.spark.models.mllib_engine:MLlibModel",
    "sklearn": "medspark.spark.models.sklearn_engine:SklearnModel",
    "torch": "medspark.spark.models.torch_engine:TorchModel",
}


def engine_class(name: str) -> type[Model]:
    """The `Model` subclass of an engine (models saved before `kind` existed are MLlib)."""
    try:
        module, cls = ENGINES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; known: {sorted(ENGINES)}") from None
    return getattr(importlib.import_module(module), cls)
