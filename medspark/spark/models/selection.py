"""Model selection: which engine fits each candidate, grouped CV through the model interface,
and the one leaderboard.

`plan_specs` expands every configured candidate's grid (`medspark.models.algorithms.param_grid`)
into `ModelSpec`s and chooses the engine of each: an import path runs on the scikit-learn engine
(the training split must fit a task: `train.sklearn_max_rows`, `train.task_memory_mb`); an MLlib
name runs on MLlib, or with `engine: auto` as its scikit-learn counterpart when the split fits
a task and the candidate translates. `cross_validate` hands each engine its models and the
`FoldSet`; `Leaderboard` ranks all of them by the one metric (NaN means last, ties in
configuration order) and names the winner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medspark.config import ConfigError
from medspark.models.algorithms import (
    get_algorithm,
    is_estimator_path,
    larger_is_better,
    param_grid,
)
from medspark.models.config import TrainSettings
from medspark.spark.models.base import FoldScore, ModelContext, ModelSpec, engine_class

# bytes a task holds per training value: the staged frame, its imputed copy, the estimator's
# own float copy (scikit-learn converts to a contiguous float array)
BYTES_PER_VALUE = 8 * 3


@dataclass(frozen=True)
class TaskBudget:
    """Whether the training split fits one Spark task (the scikit-learn engine's condition)."""

    rows: int
    columns: int
    max_rows: int
    memory_mb: int

    @property
    def bytes(self) -> int:
        return self.rows * (self.columns + 4) * BYTES_PER_VALUE

    @property
    def fits(self) -> bool:
        return self.rows <= self.max_rows and self.bytes <= self.memory_mb * 2**20

    def why_not(self) -> str:
        if self.rows > self.max_rows:
            return (f"train.sklearn_max_rows={self.max_rows}: the training split has "
                    f"{self.rows} rows")
        return (f"train.task_memory_mb={self.memory_mb}: the training split needs about "
                f"{self.bytes / 2**20:.0f} MiB in a task")


def plan_specs(cfg: TrainSettings, budget: TaskBudget) -> list[ModelSpec]:
    """Every grid point of every candidate, with the engine that fits it (module doc)."""
    from medspark.models.counterparts import sklearn_counterpart

    specs: list[ModelSpec] = []
    too_big: list[str] = []
    for cand in cfg.candidates():
        for params in param_grid(cand.params, cand.grid):
            order = len(specs)
            if is_estimator_path(cand.algorithm):
                if not budget.fits:
                    too_big.append(cand.algorithm)
                specs.append(ModelSpec(cand.algorithm, params, "sklearn", cand.algorithm, order))
                continue
            mllib = ModelSpec(cand.algorithm, params, "mllib", get_algorithm(cand.algorithm).path,
                              order)
            if cfg.engine != "auto":
                specs.append(mllib)
                continue
            if not budget.fits:
                specs.append(ModelSpec(**{**mllib.__dict__, "note": budget.why_not()
                                          + ": MLlib"}))
                continue
            path, why = sklearn_counterpart(cand.algorithm, params)
            if path is None:
                specs.append(ModelSpec(**{**mllib.__dict__, "note": f"MLlib: {why}"}))
            else:
                specs.append(ModelSpec(cand.algorithm, params, "sklearn", path, order,
                                       "engine auto: scikit-learn counterpart in Spark tasks"))
    if too_big:
        names = ", ".join(dict.fromkeys(too_big))
        raise ConfigError(f"{budget.why_not()} and the scikit-learn candidate(s) {names} are "
                          "fitted in one Spark task each; raise the setting, sample the table, "
                          "or use MLlib algorithms")
    return specs


def task_modules(cfg: TrainSettings) -> list[str]:
    """The modules a task of this run imports: the task engine's and every candidate's
    estimator module (scikit-learn path or an MLlib name's counterpart), for `warm_workers`."""
    from medspark.models.counterparts import sklearn_counterpart

    mods = ["medspark.spark.models.sklearn_engine", "sklearn.pipeline", "sklearn.preprocessing"]
    for cand in cfg.candidates():
        path = cand.algorithm if is_estimator_path(cand.algorithm) else \
            sklearn_counterpart(cand.algorithm, cand.params)[0]
        if path and "." in path:
            mods.append(path.rsplit(".", 1)[0])
    return list(dict.fromkeys(mods))


@dataclass
class Leaderboard:
    """One row per grid point (`frame`, what leaderboard.parquet holds), best first;
    `specs[i]` and `fit_seconds[i]` (mean per fold: run information, not in the file) belong
    to row i."""

    frame: pd.DataFrame
    specs: list[ModelSpec]
    fit_seconds: list[float]

    def best(self) -> ModelSpec:
        if self.frame["error"].iloc[0] is not None or np.isnan(self.frame["mean"].iloc[0]):
            raise ConfigError("every candidate failed: " + "; ".join(
                f"{r.algorithm} {r.params}: {r.error}" for r in self.frame.itertuples()))
        return self.specs[0]

    def best_row(self) -> dict[str, Any]:
        return self.frame.iloc[0].to_dict()


def cross_validate(specs: list[ModelSpec], ctx: ModelContext, folds: Any) -> Leaderboard:
    """Every spec's fold scores, each engine through `Model.cross_validate`, then ranked."""
    scores: list[FoldScore] = []
    for engine in dict.fromkeys(s.engine for s in specs):
        mine = [i for i, s in enumerate(specs) if s.engine == engine]
        cls = engine_class(engine)
        found = cls.cross_validate([cls(specs[i], ctx) for i in mine], folds)
        scores += [FoldScore(mine[f.candidate], f.fold, f.score, f.fit_seconds, f.error)
                   for f in found]
    return leaderboard(specs, scores, ctx.metric, folds.k)


def leaderboard(specs: list[ModelSpec], scores: list[FoldScore], metric: str, k: int
                ) -> Leaderboard:
    """Mean and sd (ddof 1) of each spec's fold scores; a spec with a failed fold has NaN mean
    and its first error, and ranks last."""
    rows, seconds = [], []
    for i, spec in enumerate(specs):
        mine = sorted((s for s in scores if s.candidate == i), key=lambda s: s.fold)
        values = np.full(k, np.nan)
        for s in mine:
            values[s.fold] = s.score
        error = next((s.error for s in mine if s.error), None)
        ok = values[~np.isnan(values)] if error is None else values[:0]
        rows.append({"algorithm": spec.algorithm, "kind": spec.engine,
                     "estimator": spec.estimator,
                     "params": json.dumps(spec.params, sort_keys=True, default=str),
                     "metric": metric, "mean": float(ok.mean()) if len(ok) else float("nan"),
                     "sd": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"),
                     "n_folds": int(len(ok)), "fold_scores": values.tolist(),
                     "error": error, "note": spec.note})
        seconds.append(float(np.mean([s.fit_seconds for s in mine])) if mine else float("nan"))
    board = pd.DataFrame(rows)
    sign = -1.0 if larger_is_better(metric) else 1.0
    order = (sign * board["mean"]).fillna(np.inf).sort_values(kind="stable").index
    board = board.loc[order].reset_index(drop=True)
    board["rank"] = np.arange(1, len(board) + 1)
    return Leaderboard(board, [specs[i] for i in order], [seconds[i] for i in order])
