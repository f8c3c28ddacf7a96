"""Spark-free building blocks of model training: missing values, grouped splits, metrics, plots.

Everything here works on pandas/numpy in one process; the Spark layer calls it on collected
feature tables or inside `mapInPandas`. `medspark.models.plots` is imported on its own (it
loads matplotlib).
"""

import importlib
from typing import Any

# name -> submodule; imported on first use, so a task that needs one submodule (a Spark
# worker's first task pays for every import) does not load scipy.stats and the rest
_EXPORTS = {
    **dict.fromkeys(["bootstrap", "classification_metrics", "clustering_metrics",
                     "regression_metrics"], "metrics"),
    **dict.fromkeys(["FittedImputer", "ImputeReport", "ImputeResult", "MissingColumnError",
                     "MissingValuePlan"], "missing"),
    **dict.fromkeys(["LeakageReport", "Split", "assert_no_leakage", "check_leakage",
                     "grouped_stratified_kfold", "train_test_split_grouped"], "splits"),
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"medspark.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'medspark.models' has no attribute {name!r}")


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
