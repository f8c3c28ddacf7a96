"""The model folder: written and read through `Folder` (pyarrow filesystems), so a lake on HDFS
or an object store holds models like a local one.

    models/<model_id>/  metadata.json  metrics.json  leaderboard.parquet  imputer/
                        pipeline/ (MLlib) | sklearn_pipeline.joblib (scikit-learn)
                        split/ (group -> fold, -1 = held out)   *.png

`metadata.json` is written last: a folder without it is incomplete, and `load_bundle` refuses
it. A re-run with the same model id replaces the folder.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from medspark.config import ConfigError
from medspark.models.folder import Folder
from medspark.models.missing import FittedImputer
from medspark.spark.models.base import Model, ModelContext, Weights, engine_class

METADATA, METRICS, LEADERBOARD, IMPUTER, SPLIT = (
    "metadata.json", "metrics.json", "leaderboard.parquet", "imputer", "split")


@dataclass
class Bundle:
    """A saved model: its metadata, imputer and fitted model (None for per-group models,
    whose imputers and pipelines live in `group_models.parquet`)."""

    folder: Folder
    meta: dict[str, Any]
    imputer: FittedImputer | None
    model: Model | None

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "mllib")


def write_folder(folder: Folder, *, model: Model, imputer: FittedImputer,
                 leaderboard: pd.DataFrame, metrics: dict[str, Any],
                 metadata: dict[str, Any], split: Any = None,
                 plots: Callable[[Folder], list[str]] | None = None) -> dict[str, Any]:
    """Replace `folder` with the model's files (`plots(folder)` draws the PNGs and names
    them); `metadata` (plus what the model's `save` returns) is written last. Returns the
    metadata written."""
    folder.remove()
    folder.make()
    # the plots are drawn by the driver while Spark (the JVM) writes the split table
    with ThreadPoolExecutor(1, thread_name_prefix="medspark-plots") as pool:
        drawn = pool.submit(plots, folder) if plots else None
        saved = model.save(folder)
        imputer.save(folder.child(IMPUTER))
        folder.write_parquet(LEADERBOARD, leaderboard)
        if split is not None and folder.child(SPLIT).spark_uri() is not None:
            split.coalesce(1).write.mode("overwrite").parquet(folder.child(SPLIT).spark_uri())
        saved["plots"] = drawn.result() if drawn else []
    folder.write_json(METRICS, metrics)
    meta = {**metadata, **saved}
    folder.write_json(METADATA, meta)
    return meta


def weights_doc(weights: Weights | None, features: list[str]) -> dict[str, Any] | None:
    if weights is None:
        return None
    return {"kind": weights.kind, "values": dict(zip(features, weights.values, strict=True))}


def find_folder(models_root: Folder, model: str) -> Folder:
    """A model given as a folder (path or URI holding metadata.json) or an id under
    `models_root`."""
    for candidate in (model, models_root.child(model)):
        try:
            folder = Folder.at(candidate)
        except (OSError, ValueError):
            continue
        if folder.exists(METADATA):
            return folder
    raise ConfigError(f"model {model!r}: neither a model folder nor {models_root}/{model} "
                      "(no metadata.json)")


def load_bundle(folder: Folder) -> Bundle:
    """metadata, imputer and model of a saved folder (pickles are trusted: load only models you
    wrote). `kind` picks the engine; folders saved before `kind` existed are MLlib."""
    meta = folder.read_json(METADATA)
    kind = meta.get("kind", "mllib")
    if kind in ("torch", "sklearn_per_group"):
        return Bundle(folder, meta, None, None)
    imputer = FittedImputer.load(folder.child(IMPUTER))
    labels = meta.get("labels")
    ctx = ModelContext(task=meta["task"],
                       n_classes=len(labels or []) if meta["task"] == "classification" else 0,
                       labels=labels, standardize=bool(meta.get("config", {})
                                                       .get("standardize", True)),
                       seed=int(meta.get("seed", 0)), metric="")
    return Bundle(folder, meta, imputer, engine_class(kind).load(folder, meta, ctx))
