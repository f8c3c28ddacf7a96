"""Patient-grouped held-out split and CV folds, assigned in Spark; the rows each fold fits on.

`assign_folds` never collects a row key or a group id: each group (a patient; a row whose group
is null is its own group, `own:<key>`) gets a stratum (its most frequent class for
classification, ties to the smallest; one stratum otherwise), is ranked inside its stratum by a
seeded xxhash64 of its id, and by that rank goes to the test split (the first
`round(test_size * groups)` of the stratum, at least one, never all) or to CV fold
`(rank - n_test) mod k`. So every stratum is split in proportion, each group lies on exactly one
side of every split (no leakage by construction), and the assignment depends only on the group
ids, the labels and the seed: not on row order or partitioning. Only per-stratum and per-fold
counts reach the driver. (`medspark.models.hash_split` is the same assignment on an Arrow
table, for a table one task splits: `split_task.py`.)

`FoldSet` holds the result (staged once as Parquet files, read by everything after) and the fold
imputers, and gives each engine its rows: Spark DataFrames per fold (MLlib), or the staged files
(task engines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from medspark.config import ConfigError
from medspark.models.folder import Folder
from medspark.models.hash_split import SplitError, split_counts
from medspark.models.missing import FittedImputer, MissingValuePlan, model_features
from medspark.spark.models.base import FOLD, GROUP, LABEL, OWN_GROUP, Rows, StagedRows
from medspark.spark.models.impute import accepted, fit_in_tasks, impute
from medspark.spark.models.tasks import read_staged, stage_rows

STRATUM, ROWS, RANK, SIZE = "_ms_stratum", "_ms_rows", "_ms_rank", "_ms_size"


def group_column(group: str, key: str) -> Any:
    """The group id as a string; a row without one is its own group."""
    return F.coalesce(F.col(group).cast("string"),
                      F.concat(F.lit(OWN_GROUP), F.col(key).cast("string")))


def assign_folds(frame: DataFrame, *, group: str, key: str, stratify: bool, test_size: float,
                 k: int, seed: int, labels: list[Any] | None = None,
                 broadcast_max: int = 2_000_000, folds_setting: str = "train.selection.folds"
                 ) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """(rows with `_ms_group` and `_ms_fold`, the group table, split counts). See module doc.
    `folds_setting` is the setting an error about too few groups tells the user to lower."""
    frame = frame.withColumn(GROUP, group_column(group, key))
    aggs = [F.count(F.lit(1)).alias(ROWS)]
    aggs.append(F.mode(LABEL, True).alias(STRATUM) if stratify else F.lit(0.0).alias(STRATUM))
    groups = frame.groupBy(GROUP).agg(*aggs)
    order = Window.partitionBy(STRATUM).orderBy(F.xxhash64(F.lit(seed), F.col(GROUP)), GROUP)
    ranked = (groups.withColumn(RANK, F.row_number().over(order) - 1)
              .withColumn(SIZE, F.count(F.lit(1)).over(Window.partitionBy(STRATUM))))
    n_test = F.greatest(F.lit(1), F.least(F.col(SIZE) - 1,
                                          F.round(F.col(SIZE) * F.lit(test_size)))).cast("int")
    fold = F.when(F.col(RANK) < n_test, F.lit(-1)).otherwise(
        (F.col(RANK) - n_test) % F.lit(k)).cast("int")
    table = ranked.select(GROUP, STRATUM, ROWS, fold.alias(FOLD)).cache()
    cells = table.groupBy(STRATUM, FOLD).agg(  # one small aggregate serves every count
        F.count(F.lit(1)).alias("g"), F.sum(ROWS).alias("n"),
        F.count(F.when(F.col(GROUP).startswith(OWN_GROUP), 1)).alias("own")).collect()
    try:
        info = split_counts([{"stratum": r[STRATUM], "fold": r[FOLD], "g": r["g"], "n": r["n"],
                              "own": r["own"]} for r in cells], k, group, stratify, labels,
                            folds_setting)
    except SplitError as e:
        raise ConfigError(str(e)) from None
    n_groups = info["test_groups"] + info["train_groups"]
    assigned = table.select(GROUP, FOLD)
    if n_groups <= broadcast_max:
        assigned = F.broadcast(assigned)
    framed = frame.join(assigned, GROUP)
    return framed, table, info


@dataclass
class FoldSet:
    """The training split with its folds, its fold imputers and the rows each engine fits.

    `imputers[f]` was fitted without fold f (`imputers[None]`: on every training row). With
    `plan` set (the training split fits a task), imputers are fitted where they are needed:
    task engines fit each fold's imputer in the task that fits on the fold (and the final one
    in the refit task); `imputer(f)` fits the ones a Spark engine asks for, in Spark tasks.
    """

    framed: DataFrame
    k: int
    key: str
    features: list[str]
    columns: list[str]
    imputers: dict[int | None, FittedImputer]
    stage_folder: Folder | None = None
    staged: StagedRows | None = None
    # named aggregates the staging pass also computes (`observe`), and their values after it
    observe: list[Any] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)
    plan: MissingValuePlan | None = None
    _cached: dict[int, DataFrame] = field(default_factory=dict)

    def imputer(self, fold: int | None) -> FittedImputer:
        """The imputer fitted without `fold` (None: on every training row)."""
        if fold not in self.imputers:
            if self.plan is None:
                raise KeyError(f"no imputer fitted for fold {fold}")
            todo = [f for f in (None, *range(self.k)) if f not in self.imputers]
            try:
                self.imputers.update(fit_in_tasks(self.framed.sparkSession, self.stage(),
                                                  self.plan, todo))
            except ValueError as e:
                raise ConfigError(f"train.missing: {e}") from None
        return self.imputers[fold]

    def features_of(self, fold: int | None) -> list[str]:
        return model_features(self.imputer(fold), self.features)

    def stage(self) -> StagedRows:
        """Every row, test split included, written once as Parquet; from then on `framed`
        reads those files. They are what task engines read, and the run's on-disk copy of its
        rows for everything else (Spark engines, evaluation): one pass over the source (which
        also computes the `observe` aggregates), and no in-memory cache that grows with the
        rows."""
        if self.staged is None:
            if self.stage_folder is None:
                raise ValueError("this run has no staging folder")
            self.staged, self.observed = stage_rows(self.framed, self.stage_folder, self.key,
                                                    self.columns, self.observe)
            self.framed = read_staged(self.framed.sparkSession, self.staged)
        return self.staged

    def spark_rows(self, fold: int) -> tuple[Rows, DataFrame]:
        """(training rows, validation rows) of `fold`, imputed by its imputer, cached."""
        part = accepted(impute(self.framed.where(F.col(FOLD) >= 0), self.imputer(fold),
                               self.features)).cache()
        self._cached[fold] = part
        train = part.where(F.col(FOLD) != fold)
        return Rows(self.features_of(fold), lambda: train), part.where(F.col(FOLD) == fold)

    def release(self, fold: int) -> None:
        cached = self._cached.pop(fold, None)
        if cached is not None:
            cached.unpersist()

    def training_rows(self, in_task: bool = False) -> Rows:
        """Every training row with the final imputer: staged (task engines) and, on first use,
        imputed by Spark and cached (Spark engines read it many times; `release(None)`).
        `in_task`: a task engine will fit the final imputer itself (from `plan`) when it is
        not fitted yet."""
        if in_task and None not in self.imputers and self.plan is not None:
            return Rows(list(self.features), self._no_frame, imputer=self.plan,
                        staged=self.stage())
        final = self.imputer(None)

        def build() -> DataFrame:
            frame = accepted(impute(self.framed.where(F.col(FOLD) >= 0), final,
                                    self.features)).cache()
            self._cached[-2] = frame
            return frame

        return Rows(self.features_of(None), build, imputer=final, staged=self.staged)

    @staticmethod
    def _no_frame() -> DataFrame:
        raise ValueError("these rows are for a task engine: its imputer is fitted in the task")

    def release_all(self) -> None:
        for fold in list(self._cached):
            self.release(fold)
