"""Spark-free building blocks of model training: missing values, grouped splits, metrics, plots.

Everything here works on pandas/numpy in one process; the Spark layer calls it on collected
feature tables or inside `mapInPandas`. `medspark.models.plots` is imported on its own (it
loads matplotlib).
"""

from medspark.models.metrics import (
    bootstrap,
    classification_metrics,
    clustering_metrics,
    regression_metrics,
)
from medspark.models.missing import (
    FittedImputer,
    ImputeReport,
    ImputeResult,
    MissingColumnError,
    MissingValuePlan,
)
from medspark.models.splits import (
    LeakageReport,
    Split,
    assert_no_leakage,
    check_leakage,
    grouped_stratified_kfold,
    train_test_split_grouped,
)

__all__ = [
    "FittedImputer",
    "ImputeReport",
    "ImputeResult",
    "LeakageReport",
    "MissingColumnError",
    "MissingValuePlan",
    "Split",
    "assert_no_leakage",
    "bootstrap",
    "check_leakage",
    "classification_metrics",
    "clustering_metrics",
    "grouped_stratified_kfold",
    "regression_metrics",
    "train_test_split_grouped",
]
