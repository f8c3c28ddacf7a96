"""One model per group (e.g. per site): selection, refit and held-out evaluation on one group's
rows, in one process. Spark-free: `medspark train` with `train.per_group: COL` runs
`fit_group` once per value of COL inside `applyInPandas`.

The group's rows are split like the whole table is (`medspark.models.splits`: held-out patients,
grouped stratified folds); every candidate is scored on the folds with its fold imputer
(`MissingValuePlan.fit` on the fold's training rows) and the selection statistics of
`medspark.models.scores`; the best is refitted with the imputer fitted on every training row
and applied to the held-out rows. A group that cannot be fitted (too few patients, one class)
is a result with an error, not a failed job.
"""

from __future__ import annotations

import math
import pickle
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medspark.models.missing import MissingValuePlan, mark_rejected, model_features
from medspark.models.scores import fold_stats, score_from_stats
from medspark.models.sklearn_candidates import fit_pipeline, predict_outputs
from medspark.models.sklearn_estimators import feature_frame

REJECT = "_ms_reject_step"


@dataclass(frozen=True)
class GroupSpec:
    """What every group is fitted with (broadcast to the tasks)."""

    key: str
    group: str
    label: str | None             # the encoded label column
    features: list[str]
    candidates: list[tuple[str, dict[str, Any]]]
    plan: MissingValuePlan
    task: str
    n_classes: int
    metric: str
    larger_is_better: bool
    folds: int
    test_size: float
    seed: int
    standardize: bool


@dataclass
class GroupResult:
    """One group's winner (pickled imputer + pipeline), its board, its held-out rows."""

    n_rows: int
    model: bytes | None = None
    best: int | None = None
    cv: list[dict[str, Any]] = field(default_factory=list)
    test: pd.DataFrame | None = None
    error: str | None = None


def fit_group(pdf: pd.DataFrame, spec: GroupSpec) -> GroupResult:
    """Select, refit and score the held-out rows of one group's rows (errors recorded)."""
    pdf = pdf.sort_values(spec.key, kind="stable", ignore_index=True)
    result = GroupResult(len(pdf))
    try:
        _fit(pdf, spec, result)
    except Exception as e:  # noqa: BLE001 - a group that cannot be fitted is reported
        result.error = "".join(traceback.format_exception_only(e)).strip()
    return result


def _fit(pdf: pd.DataFrame, spec: GroupSpec, result: GroupResult) -> None:
    from threadpoolctl import threadpool_limits

    from medspark.models.splits import grouped_stratified_kfold, train_test_split_grouped

    target = spec.label if spec.task == "classification" else None
    kind = "classification" if target else "regression"
    split = train_test_split_grouped(pdf, spec.group, target, spec.test_size, spec.seed, kind)
    train = pdf.iloc[split.train].reset_index(drop=True)
    test = pdf.iloc[split.test].reset_index(drop=True)
    folds = grouped_stratified_kfold(train, spec.group, target, spec.folds, spec.seed, kind)
    scores = np.full((len(spec.candidates), len(folds)), np.nan)
    errors: list[str | None] = [None] * len(spec.candidates)
    with threadpool_limits(limits=1):
        for f, fold in enumerate(folds):
            imputer = spec.plan.fit(train.iloc[fold.train].reset_index(drop=True))
            feats = model_features(imputer, spec.features)
            fit_rows = _accepted(train.iloc[fold.train], imputer, spec.features)
            valid = _accepted(train.iloc[fold.test], imputer, spec.features)
            for c, (algorithm, params) in enumerate(spec.candidates):
                try:
                    model = _fit_one(algorithm, params, fit_rows, feats, spec)
                    out = predict_outputs(model, feature_frame(valid, feats), spec.task,
                                          spec.n_classes)
                    y = valid[spec.label].to_numpy() if spec.label else None
                    scores[c, f] = score_from_stats(spec.metric, fold_stats(
                        spec.metric, y, out["prediction"], out["probability"],
                        out["features"], spec.n_classes))
                except Exception as e:  # noqa: BLE001
                    errors[c] = errors[c] or f"{type(e).__name__}: {e}"
        means = [float(np.mean(s)) if errors[c] is None and not np.isnan(s).all() else math.nan
                 for c, s in enumerate(scores)]
        result.cv = [{"algorithm": a, "params": p, "mean": means[c],
                      "fold_scores": scores[c].tolist(), "error": errors[c]}
                     for c, (a, p) in enumerate(spec.candidates)]
        ranked = [c for c in np.argsort([(-m if spec.larger_is_better else m) for m in means],
                                        kind="stable") if not math.isnan(means[c])]
        if not ranked:
            raise ValueError("every candidate failed: " + "; ".join(
                str(e) for e in errors if e))
        best = int(ranked[0])
        imputer = spec.plan.fit(train)
        feats = model_features(imputer, spec.features)
        algorithm, params = spec.candidates[best]
        model = _fit_one(algorithm, params, _accepted(train, imputer, spec.features), feats,
                         spec)
        scored = mark_rejected(test, imputer, spec.features)
        scored = scored[scored[REJECT].isna()]
        out = predict_outputs(model, feature_frame(scored, feats), spec.task, spec.n_classes)
    result.best = best
    result.model = pickle.dumps({"imputer": imputer, "pipeline": model, "features": feats},
                                protocol=pickle.HIGHEST_PROTOCOL)
    result.test = scored[[spec.key, spec.group, *([spec.label] if spec.label else [])]].assign(
        prediction=out["prediction"],
        probability=list(out["probability"]) if out["probability"] is not None else None)


def _accepted(pdf: pd.DataFrame, imputer: Any, features: list[str]) -> pd.DataFrame:
    out = mark_rejected(pdf.reset_index(drop=True), imputer, features)
    return out[out[REJECT].isna()]


def _fit_one(algorithm: str, params: dict[str, Any], rows: pd.DataFrame, feats: list[str],
             spec: GroupSpec) -> Any:
    y = rows[spec.label].to_numpy(dtype="float64") if spec.task != "clustering" else None
    return fit_pipeline(algorithm, params, feature_frame(rows, feats), y,
                        standardize=spec.standardize, seed=spec.seed)


def score_rows(models: dict[Any, bytes], pdf: pd.DataFrame, column: str, features: list[str],
               task: str, n_classes: int) -> pd.DataFrame:
    """Each row scored by its group's model (imputed by that group's imputer first): the
    rows plus `prediction`, `probability`, `_ms_reject_step`, `_ms_reject_reason`."""
    from medspark.models.missing import REJECT_REASON, REJECT_STEP

    out = pdf.reset_index(drop=True).copy()
    out["prediction"] = np.nan
    out["probability"] = None
    out[REJECT_STEP], out[REJECT_REASON] = None, None
    cache: dict[Any, Any] = {}
    for value in pd.unique(out[column]):
        mask = (out[column] == value).to_numpy() if value is not None and value == value \
            else out[column].isna().to_numpy()
        if value not in models:
            out.loc[mask, REJECT_STEP] = "no_group_model"
            out.loc[mask, REJECT_REASON] = f"no model for {column}={value}"
            continue
        if value not in cache:
            cache[value] = pickle.loads(models[value])
        bundle = cache[value]
        part = mark_rejected(out.loc[mask, list(pdf.columns)], bundle["imputer"], features)
        out.loc[mask, REJECT_STEP] = part[REJECT_STEP].to_numpy()
        out.loc[mask, REJECT_REASON] = part[REJECT_REASON].to_numpy()
        ok = part[part[REJECT_STEP].isna()]
        if len(ok):
            pred = predict_outputs(bundle["pipeline"], feature_frame(ok, bundle["features"]),
                                   task, n_classes)
            out.loc[ok.index, "prediction"] = pred["prediction"]
            if pred["probability"] is not None:
                out.loc[ok.index, "probability"] = pd.Series(list(pred["probability"]),
                                                             index=ok.index)
    return out
