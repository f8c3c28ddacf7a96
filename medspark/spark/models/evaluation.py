"""Held-out evaluation through the model interface: predictions in Spark, metrics on a bounded
sample of them, plots.

The test split is imputed by the saved imputer and scored by the fitted model in Spark; counts
and the imputation report are Spark aggregates. (A task engine whose refit task already scored
the split, because it has at most `train.eval_max_rows` rows, hands over those rows and counts
instead: the same imputer, model and columns without two more Spark jobs.) The metrics with
their patient-level bootstrap CIs (`medspark.models.metrics`) and the plots need the rows, so
at most `train.eval_max_rows` scored rows come to the driver: all of them when the test split
is that small, otherwise whole groups drawn by a seeded hash of the group id (so the bootstrap
still resamples patients). metrics.json says which (`evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medspark.models.folder import Folder
from medspark.models.missing import FittedImputer, ImputeReport
from medspark.spark.models.base import (
    GROUP,
    LABEL,
    MODEL_X,
    PREDICTION,
    Model,
    Weights,
    scored_columns,
)
from medspark.spark.models.impute import accepted, impute, report
from medspark.spark.models.scoring import add_scores

HASH_SCALE = 1_000_000


@dataclass
class Evaluation:
    """The held-out metrics, the rows they rest on, and what was counted."""

    metrics: dict[str, Any]
    sample: pd.DataFrame
    counts: dict[str, int]
    sampling: dict[str, Any]
    report: ImputeReport
    plots: list[str] = field(default_factory=list)


def evaluate(model: Model, test: DataFrame, imputer: FittedImputer, features: list[str],
             key: str, *, n_boot: int, seed: int, max_rows: int) -> Evaluation:
    """Impute and score the held-out rows `test` (raw); metrics on at most `max_rows` of them.
    A task engine that scored them in its refit task (`model.held_out`) skips the Spark jobs:
    same rows, imputer, model and columns."""
    ctx = model.ctx
    if model.held_out is not None:
        rep, sample = model.held_out.report, model.held_out.rows
        sampling = {**_every_row(rep.rows_out, max_rows), "rows_used": len(sample),
                    "scored_in": "the refit task"}
    else:
        rep = report(test, imputer, features, [c for c in test.columns if c in features])
        scored = add_scores(model.transform(accepted(impute(test, imputer, features))),
                            ctx.task, ctx.labels)
        cols = scored_columns(key, ctx.task)
        sample, sampling = bounded_sample(scored.select(*cols), rep.rows_out,
                                          max_rows, seed)
        sampling["scored_in"] = "spark"
    x = np.vstack(sample[MODEL_X].to_numpy()) if ctx.task == "clustering" and len(sample) \
        else None
    metrics = test_metrics(sample, ctx.task, ctx.labels, GROUP, n_boot, seed, x)
    counts = {"test_rows": rep.rows_in, "test_rows_rejected": rep.rows_in - rep.rows_out,
              "test_rows_scored": rep.rows_out}
    return Evaluation(metrics, sample, counts, sampling, rep)


def bounded_sample(scored: DataFrame, n_rows: int, max_rows: int, seed: int
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """At most `max_rows` rows of `scored` on the driver: all, or whole groups by hash."""
    info = _every_row(n_rows, max_rows)
    chosen = scored
    if n_rows > max_rows:
        share = 0.97 * max_rows / n_rows  # groups are drawn, so the row count varies a little
        pick = (F.abs(F.xxhash64(F.lit(seed), F.col(GROUP))) % HASH_SCALE) \
            < int(share * HASH_SCALE)
        chosen = scored.where(pick).limit(max_rows)
        info.update(sampled=True, method="whole groups, by a seeded xxhash64 of the group id",
                    group_share=share)
    pdf = chosen.toPandas()
    key = pdf.columns[0]
    pdf = pdf.sort_values(key, kind="stable").reset_index(drop=True)
    info["rows_used"] = len(pdf)
    return pdf, info


def _every_row(n_rows: int, max_rows: int) -> dict[str, Any]:
    """metrics.json's `evaluation` when every scored held-out row is used."""
    return {"rows": n_rows, "max_rows": max_rows, "sampled": False,
            "method": "every scored held-out row"}


def test_metrics(pdf: pd.DataFrame, task: str, labels: list[Any] | None, group: str,
                 n_boot: Any, seed: int | None = None, features: np.ndarray | None = None
                 ) -> dict[str, Any]:
    """`medspark.models.metrics` on scored rows (patient-grouped bootstrap). `n_boot` may be a
    `TrainSettings` (then `seed` is its seed), as `medspark deep` calls it."""
    from medspark.models.metrics import (
        bootstrap,
        classification_metrics,
        clustering_metrics,
        regression_metrics,
    )

    if hasattr(n_boot, "n_boot"):  # TrainSettings
        n_boot, seed = n_boot.n_boot, n_boot.seed
    seed = int(seed or 0)
    kw = {"groups": pdf[group].to_numpy(), "n_boot": int(n_boot), "seed": seed}
    if task == "regression":
        return regression_metrics(pdf[LABEL], pdf[PREDICTION], **kw)
    if task == "clustering":
        return clustering_metrics(features, pdf[PREDICTION].astype(int), noise_label=None,
                                  seed=seed, sample_size=20_000 if len(pdf) > 20_000 else None)
    y, p = pdf[LABEL].to_numpy().astype(int), pdf[PREDICTION].to_numpy().astype(int)
    if len(labels or []) == 2:
        return classification_metrics(y, pdf["score"], y_pred=p, pos_label=1, **kw)
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    out = bootstrap(lambda i: {"accuracy": float(np.mean(y[i] == p[i])),
                               "balanced_accuracy": balanced_accuracy_score(y[i], p[i])},
                    len(y), **kw)
    out["confusion_matrix"] = {"value": confusion_matrix(y, p, labels=range(len(labels or [])))
                               .tolist(), "labels": labels, "ci_low": None, "ci_high": None,
                               "n_boot_used": 0}
    return out


def write_plots(out: str | Folder, pdf: pd.DataFrame, task: str, labels: list[Any] | None,
                weights: Weights | tuple[str, list[float]] | None, feats: list[str]
                ) -> list[str]:
    """ROC, PR, calibration and confusion (binary) / confusion (multiclass) / importances,
    as PNGs in the folder `out`; returns the file names."""
    from medspark.models import plots

    folder = Folder.at(out)
    jobs: list[tuple[str, Any]] = []
    if task == "classification" and labels and len(pdf):
        y, p = pdf[LABEL].astype(int), pdf[PREDICTION].astype(int)
        if len(labels) == 2 and y.nunique() == 2:
            s = pdf["score"]
            jobs += [("roc.png", lambda t: plots.plot_roc(y, s, t, pos_label=1)),
                     ("pr.png", lambda t: plots.plot_pr(y, s, t, pos_label=1)),
                     ("calibration.png", lambda t: plots.plot_calibration(y, s, t,
                                                                          pos_label=1))]
        names = [str(v) for v in labels]
        jobs.append(("confusion.png", lambda t: plots.plot_confusion_matrix(
            [names[i] for i in y], [names[i] for i in p], t, labels=names)))
    if weights is not None:
        kind, values = (weights.kind, weights.values) if isinstance(weights, Weights) \
            else weights
        title = "Feature importance" if kind == "importance" else "Coefficients"
        jobs.append((f"feature_{kind}.png", lambda t: plots.plot_feature_importance(
            feats, values, t, title=title)))
    folder.make()
    for name, draw in jobs:
        with folder.fs.open_output_stream(f"{folder.path}/{name}") as stream:
            draw(stream)
    return [name for name, _ in jobs]
