"""`train:` settings: data, missing values, candidates × grids, evaluation (validated by pydantic).

```yaml
train:
  task: classification          # classification | regression | clustering
  label: label
  group_col: patient_pseudo_id
  aggregate: none               # none | series_mean | series_max (by series_col)
  missing: {rules: [{strategy: fill, columns: ["*"], method: median}]}
  selection:
    folds: 3
    metric: accuracy
    candidates:
      - {algorithm: RandomForestClassifier, params: {numTrees: 20}, grid: {maxDepth: [3, 5]}}
      - {algorithm: LogisticRegression, grid: {regParam: [0.0, 0.01]}}
      - {algorithm: sklearn.ensemble.HistGradientBoostingClassifier,   # a dotted import path:
         params: {max_iter: 100}, grid: {max_depth: [3, 5]}}          # a scikit-learn estimator
```

MLlib names take MLlib parameter names (`maxDepth`); scikit-learn paths take the estimator's
`get_params()` names (`max_depth`, nested `step__param`), checked with scikit-learn's own
constraints here, before Spark starts. `engine: auto` (the default) fits an MLlib candidate as
its scikit-learn counterpart in Spark tasks where the training split fits one
(`medspark.models.counterparts`); `engine: mllib` keeps MLlib names on MLlib.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medspark.models.algorithms import is_estimator_path
from medspark.models.missing import MissingValuePlan

Task = Literal["classification", "regression", "clustering"]
DEFAULT_MISSING: dict[str, Any] = {"rules": [{"strategy": "fill", "columns": ["*"],
                                              "method": "median"}]}
DEFAULT_CANDIDATES = {
    "classification": [{"algorithm": "LogisticRegression", "grid": {"regParam": [0.0, 0.01]}},
                       {"algorithm": "RandomForestClassifier", "params": {"numTrees": 20}}],
    "regression": [{"algorithm": "LinearRegression", "grid": {"regParam": [0.0, 0.01]}},
                   {"algorithm": "RandomForestRegressor", "params": {"numTrees": 20}}],
    "clustering": [{"algorithm": "KMeans", "grid": {"k": [2, 3]}}],
}
ENGINE_DOC = ("auto: an MLlib candidate whose training split fits a Spark task is fitted as "
              "its scikit-learn counterpart in parallel tasks, MLlib beyond; mllib: MLlib "
              "names on MLlib. Import paths always run as scikit-learn tasks.")
DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse", "clustering": "silhouette"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Strict):
    """One algorithm with fixed `params` and a `grid` (param → list of values) to search: an
    MLlib name (`RandomForestClassifier`) or a scikit-learn estimator's import path
    (`sklearn.ensemble.RandomForestClassifier`; anything with a dot)."""

    algorithm: str
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> Candidate:
        from medspark.models.algorithms import check_mllib_candidate
        from medspark.models.sklearn_candidates import check_estimator_candidate

        if self.is_sklearn():  # the messages name the estimator path
            check_estimator_candidate(self.algorithm, self.params, self.grid)
        else:
            check_mllib_candidate(self.algorithm, self.params, self.grid)
        return self

    def is_sklearn(self) -> bool:
        return is_estimator_path(self.algorithm)

    def task(self) -> str:
        """classification / regression / clustering."""
        from medspark.models.algorithms import get_algorithm
        from medspark.models.sklearn_candidates import estimator_task

        if self.is_sklearn():
            return estimator_task(self.algorithm, self.params)
        return get_algorithm(self.algorithm).task


class SelectionSettings(_Strict):
    """Grouped, stratified K-fold model selection."""

    folds: int = Field(3, ge=2)
    metric: str | None = Field(None, description="default: accuracy / rmse / silhouette")
    candidates: list[Candidate] = Field(default_factory=list, description="empty: defaults")


class TrainSettings(_Strict):
    """What `medspark train` fits and how it is evaluated."""

    task: Task = "classification"
    label: str = "label"
    group_col: str = Field("patient_pseudo_id", description="rows of one group (patient) are "
                           "never on both sides of a split; a null group is its own group")
    id_col: str = "image_id"
    series_col: str = "series_pseudo_uid"
    feature_set: str | None = Field(None, description="features/feature_set=<hash>; "
                                    "default: the only one in the lake")
    features: list[str] = Field(default_factory=list,
                                description="feature columns or globs; empty: every feature")
    aggregate: Literal["auto", "none", "series_mean", "series_max"] = Field(
        "none", description="one row per series_col (mean/max of each feature); auto (the "
        "shipped conf/local.yaml): series_max for the lake's features when they have "
        "series_col, none for --table")
    positive_label: str | int | None = Field(None, description="binary: the positive class")
    standardize: bool = True
    missing: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_MISSING))
    test_size: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    n_boot: int = Field(1000, ge=0)
    engine: Literal["auto", "mllib"] = Field("auto", description=ENGINE_DOC)
    sklearn_max_rows: int = Field(200_000, ge=1, description="most training-split rows one "
                                  "scikit-learn task fits; beyond: MLlib (engine auto) or "
                                  "an error (an import-path candidate)")
    task_memory_mb: int = Field(2048, ge=16, description="memory a task may use for the "
                                "training split, estimated as rows x (features + 4) x 24 B")
    eval_max_rows: int = Field(200_000, ge=100, description="held-out rows the metrics, CIs "
                               "and plots rest on; a larger test split is sampled by group")
    impute_sample_rows: int = Field(100_000, ge=100, description="rows the plan's medians "
                                    "and `model` rules are fitted on beyond a task (drawn by "
                                    "key hash: the same rows on every run)")
    prepare: Literal["auto", "spark"] = Field(
        "auto", description="auto: a --table (no partition folders, aggregate none) that fits "
        "a task (sklearn_max_rows, task_memory_mb) is read, split and staged by one Spark task "
        "with pyarrow: the same rows, folds and model id as Spark SQL, without its start-up "
        "cost; spark: always Spark SQL")
    per_group: str | None = Field(None, description="a column: one model per value (e.g. a "
                                  "site), each fitted on that value's rows in one task")
    per_group_max: int = Field(1000, ge=1, description="most values `per_group` may have")
    selection: SelectionSettings = Field(default_factory=SelectionSettings)

    @field_validator("missing")
    @classmethod
    def _plan(cls, value: dict[str, Any]) -> dict[str, Any]:
        MissingValuePlan.from_config(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainSettings:
        from medspark.models.algorithms import check_metric

        for cand in self.candidates():
            task = cand.task()
            if task != self.task:
                what = "scikit-learn estimator" if cand.is_sklearn() else "algorithm"
                raise ValueError(f"{cand.algorithm} is a {task} {what}, task is {self.task}")
        check_metric(self.task, self.metric())
        return self

    def hashed(self) -> dict[str, Any]:
        """The settings that decide the model (what its id hashes): run-only limits left out."""
        return self.model_dump(mode="json", exclude={"sklearn_max_rows", "task_memory_mb",
                                                     "per_group_max", "prepare"})

    def candidates(self) -> list[Candidate]:
        return self.selection.candidates or [
            Candidate.model_validate(c) for c in DEFAULT_CANDIDATES[self.task]]

    def metric(self) -> str:
        return self.selection.metric or DEFAULT_METRIC[self.task]

    def missing_plan(self, id_columns: list[str], exclude: list[str]) -> MissingValuePlan:
        """The plan with the run's id columns and excluded (key/label) columns added."""
        doc = dict(self.missing)
        doc["id_columns"] = list(dict.fromkeys([*doc.get("id_columns", []), *id_columns]))
        doc["exclude"] = list(dict.fromkeys([*doc.get("exclude", []), *exclude]))
        return MissingValuePlan.model_validate(doc)
